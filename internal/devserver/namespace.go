package devserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// namespaceWait bounds how long a new server waits for its namespace to be usable: a
// frontend sees a namespace registered elsewhere only at its next namespace cache
// refresh (every 10 s by default).
const namespaceWait = 2 * time.Minute

// ensureNamespace registers the namespace (with the retention asked for) when it does
// not exist, and its search attributes when it lacks them, through this server's own
// frontend, and returns once the frontend serves both: clients that connect after
// Start find them. Servers starting together may race; the loser's calls find the
// winner's work done.
func (s *Server) ensureNamespace(o Options) error {
	conn, err := s.dialSelf()
	if err != nil {
		return err
	}
	defer conn.Close()
	wf := workflowservice.NewWorkflowServiceClient(conn)
	op := operatorservice.NewOperatorServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), namespaceWait)
	defer cancel()
	var last error
	for {
		if last = s.namespaceStep(ctx, wf, op, o); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("embedded temporal: namespace %s not ready after %s: %w", o.Namespace, namespaceWait, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// namespaceStep does what is left to do; nil means the namespace is ready.
func (s *Server) namespaceStep(ctx context.Context, wf workflowservice.WorkflowServiceClient, op operatorservice.OperatorServiceClient, o Options) error {
	call, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := wf.DescribeNamespace(call, &workflowservice.DescribeNamespaceRequest{Namespace: o.Namespace})
	err = serviceError(err)
	var notFound *serviceerror.NamespaceNotFound
	if errors.As(err, &notFound) {
		req := &workflowservice.RegisterNamespaceRequest{Namespace: o.Namespace, Description: "clusterflow playbook runs"}
		if o.Retention > 0 {
			req.WorkflowExecutionRetentionPeriod = durationpb.New(o.Retention)
		}
		_, err = wf.RegisterNamespace(call, req)
		err = serviceError(err)
		var exists *serviceerror.NamespaceAlreadyExists
		if err != nil && !errors.As(err, &exists) {
			return fmt.Errorf("registering it: %w", err)
		}
		return errors.New("registered; waiting for the frontend to see it")
	}
	if err != nil {
		return err
	}
	have, err := op.ListSearchAttributes(call, &operatorservice.ListSearchAttributesRequest{Namespace: o.Namespace})
	if err != nil {
		return err
	}
	missing := maps.Clone(o.SearchAttributes)
	maps.DeleteFunc(missing, func(name string, _ enumspb.IndexedValueType) bool {
		_, ok := have.GetCustomAttributes()[name]
		return ok
	})
	if len(missing) == 0 {
		return nil
	}
	if _, err := op.AddSearchAttributes(call, &operatorservice.AddSearchAttributesRequest{Namespace: o.Namespace, SearchAttributes: missing}); err != nil {
		return fmt.Errorf("adding search attributes %v: %w", slices.Sorted(maps.Keys(missing)), err)
	}
	return errors.New("search attributes added; checking")
}

// dialSelf is a gRPC connection to this process's own frontend.
func (s *Server) dialSelf() (*grpc.ClientConn, error) {
	addr := s.localFrontend()
	creds := insecure.NewCredentials()
	if s.tls != nil {
		tc, err := s.tls.clientConfig()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("embedded temporal: dialling its own frontend %s: %w", addr, err)
	}
	return conn, nil
}

// serviceError is a gRPC call's error as the Temporal service error it carries.
func serviceError(err error) error {
	if err == nil {
		return nil
	}
	return serviceerror.FromStatus(status.Convert(err))
}
