package activities

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"go.temporal.io/sdk/activity"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/rules"
	"github.com/clusterflow/clusterflow/internal/workerfs"
	"github.com/clusterflow/clusterflow/playbooks"
)

// This file starts and follows a root CA rotation (RotateCA).

// StartCARotationRequest starts a root CA rotation through Manager.
type StartCARotationRequest struct {
	Manager remote.Host `json:"manager"`
	// OldRoot and ForceRotate are what InspectSwarmCA read before: the rotation
	// sets ForceRotate+1. An attempt that finds the swarm past that point (a
	// rotation in progress, another root, ForceRotate already there) has nothing
	// to do: it was started by an earlier attempt, or by someone else.
	OldRoot     string `json:"oldRoot"`
	ForceRotate uint64 `json:"forceRotate"`
	// CACert and CAKey: an operator-provided root, PEM files on the worker's side.
	CACert string `json:"caCert,omitempty"`
	CAKey  string `json:"caKey,omitempty"`
	// NodeCertExpiry, when set, becomes the swarm's node certificate validity.
	NodeCertExpiry     playbooks.Duration `json:"nodeCertExpiry,omitempty"`
	RotateWorkerToken  bool               `json:"rotateWorkerToken,omitempty"`
	RotateManagerToken bool               `json:"rotateManagerToken,omitempty"`
}

// CARotationStart is what StartCARotation found or did.
type CARotationStart struct {
	// Started: this attempt updated the swarm. Otherwise the rotation had been
	// started already (Message says by whom, as far as can be told).
	Started bool     `json:"started"`
	Message string   `json:"message"`
	Status  CAStatus `json:"status"`
	// NewRoot is the provided root's fingerprint (a generated root is known only
	// when the rotation ends).
	NewRoot string `json:"newRoot,omitempty"`
}

// StartCARotation starts a root CA rotation unless one is in progress or this
// request's rotation has happened already. A provided CA is read here, checked
// (a CA certificate, valid for a year at least, the key its own) and sent to the
// engine only.
func (s *Swarm) StartCARotation(ctx context.Context, req StartCARotationRequest) (CARotationStart, error) {
	m := req.Manager
	var signing *signingCA
	if req.CACert != "" || req.CAKey != "" {
		var err error
		if signing, err = loadSigningCA(s.rem.files(), req.CACert, req.CAKey, time.Now()); err != nil {
			return CARotationStart{}, invalidInput(err.Error())
		}
	}
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return CARotationStart{}, err
	}
	defer cli.Close()
	for attempt := 0; ; attempt++ {
		st, sw, err := s.caStatus(ctx, m, cli)
		if err != nil {
			return CARotationStart{}, err
		}
		res := CARotationStart{Status: st}
		if signing != nil {
			res.NewRoot = signing.fingerprint
		}
		if msg := rotationStarted(st, req, signing); msg != "" {
			res.Message = msg
			return res, nil
		}
		spec := sw.Spec
		spec.CAConfig.SigningCAKey = "" // redacted on inspect; set below when provided
		spec.CAConfig.SigningCACert = ""
		did := []string{}
		if signing != nil {
			spec.CAConfig.SigningCACert, spec.CAConfig.SigningCAKey = signing.cert, signing.key
			did = append(did, "rotation to the provided root "+short(signing.fingerprint)+" started")
		} else {
			spec.CAConfig.ForceRotate = req.ForceRotate + 1
			did = append(did, fmt.Sprintf("rotation to a new generated root started (ForceRotate %d)", spec.CAConfig.ForceRotate))
		}
		if req.NodeCertExpiry > 0 {
			spec.CAConfig.NodeCertExpiry = req.NodeCertExpiry.Std()
			did = append(did, "node certificates valid "+req.NodeCertExpiry.String())
		}
		flags := swarm.UpdateFlags{RotateWorkerToken: req.RotateWorkerToken, RotateManagerToken: req.RotateManagerToken}
		if flags.RotateWorkerToken {
			did = append(did, "worker join token rotated")
		}
		if flags.RotateManagerToken {
			did = append(did, "manager join token rotated")
		}
		activity.RecordHeartbeat(ctx, "starting the rotation")
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		err = cli.SwarmUpdate(actx, sw.Version, spec, flags)
		cancel()
		if err != nil {
			if strings.Contains(err.Error(), "update out of sequence") && attempt < 5 {
				continue // the swarm changed meanwhile: read it again
			}
			msg := engineMessage(err)
			if signing != nil {
				msg = strings.ReplaceAll(msg, signing.key, "<CA key>")
			}
			if strings.Contains(msg, "InvalidArgument") || strings.Contains(msg, "invalid") {
				return CARotationStart{}, hostInvalid(m, "the swarm refused the CA rotation: %s", msg)
			}
			return CARotationStart{}, swarmAPI(m, "could not start the CA rotation: %s", msg)
		}
		st, _, err = s.caStatus(ctx, m, cli)
		if err != nil {
			return CARotationStart{}, err
		}
		res.Started, res.Message, res.Status = true, strings.Join(did, "; "), st
		return res, nil
	}
}

// rotationStarted says why there is nothing to start ("" when there is).
func rotationStarted(st CAStatus, req StartCARotationRequest, signing *signingCA) string {
	switch {
	case st.InProgress:
		return "a rotation is in progress already: following it (" + st.Counts() + ")"
	case signing != nil && st.RootFingerprint == signing.fingerprint:
		return "the swarm's root is the provided one already (" + short(signing.fingerprint) + ")"
	case req.OldRoot != "" && st.RootFingerprint != req.OldRoot:
		return fmt.Sprintf("the root changed already (%s, was %s): the rotation happened", short(st.RootFingerprint), short(req.OldRoot))
	case signing == nil && st.ForceRotate > req.ForceRotate:
		return fmt.Sprintf("ForceRotate is %d already (was %d): the rotation was started", st.ForceRotate, req.ForceRotate)
	}
	return ""
}

// signingCA is an operator-provided root CA, read from the worker's disk.
type signingCA struct {
	cert, key   string // PEM
	fingerprint string
}

// loadSigningCA reads and checks a provided root: the certificate must be a CA
// valid for at least a year from now, and the key must be its own. Messages name
// the files, never their content.
func loadSigningCA(files *workerfs.Policy, certPath, keyPath string, now time.Time) (*signingCA, error) {
	if certPath == "" || keyPath == "" {
		return nil, errors.New("caCert and caKey go together: give both, or neither for a generated root")
	}
	for _, f := range []struct{ field, path string }{{"caCert", certPath}, {"caKey", keyPath}} {
		if !rules.WorkerPath(f.path) {
			return nil, fmt.Errorf("%s %q must be %s on the worker", f.field, f.path, rules.WorkerPathRule)
		}
		if err := files.Read(f.path); err != nil {
			return nil, fmt.Errorf("%s: %v", f.field, err)
		}
	}
	certPEM, err := readSmall(certPath)
	if err != nil {
		return nil, fmt.Errorf("caCert: %v", err)
	}
	keyPEM, err := readSmall(keyPath)
	if err != nil {
		return nil, fmt.Errorf("caKey: %v", err)
	}
	certs := parseCerts(certPEM)
	if len(certs) != 1 {
		return nil, fmt.Errorf("caCert %s must hold exactly one PEM certificate, found %d", certPath, len(certs))
	}
	c := certs[0]
	switch {
	case !c.IsCA:
		return nil, fmt.Errorf("caCert %s is not a CA certificate (basicConstraints CA:FALSE)", certPath)
	case c.NotAfter.Before(now.Add(minRootValidity)):
		return nil, fmt.Errorf("caCert %s expires %s: swarm wants a root valid for at least a year", certPath, c.NotAfter.UTC().Format(time.DateOnly))
	}
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		return nil, fmt.Errorf("caKey %s holds no PEM block", keyPath)
	}
	key, err := parsePrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("caKey %s: %v", keyPath, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(c.PublicKey) {
		return nil, fmt.Errorf("caKey %s is not the key of caCert %s", keyPath, certPath)
	}
	return &signingCA{cert: string(certPEM), key: string(keyPEM), fingerprint: certFingerprint(c)}, nil
}

func parsePrivateKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		switch k := k.(type) {
		case *ecdsa.PrivateKey:
			return k, nil
		case *rsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		}
		return nil, errors.New("unsupported key type")
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("not an unencrypted PKCS#8, EC or PKCS#1 private key (swarm cannot use a key with a passphrase)")
}

// readSmall reads a local PEM file of at most 64 KiB.
func readSmall(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > 64<<10 {
		return nil, fmt.Errorf("%s is not a regular file of at most 64 KiB", path)
	}
	return os.ReadFile(path)
}

// WatchCARotationRequest waits for a change of the rotation's state.
type WatchCARotationRequest struct {
	Manager remote.Host `json:"manager"`
	// Seen is the Key of the status the caller has; the watch returns as soon as
	// the status differs from it, or the rotation is done, or after MaxWait.
	Seen    string             `json:"seen"`
	MaxWait playbooks.Duration `json:"maxWait"`
	// OldRoot: the rotation is not done while the swarm still trusts this root.
	OldRoot string `json:"oldRoot,omitempty"`
}

// WatchCARotation polls the swarm until its rotation state changes from what the
// caller saw, the rotation is done, or MaxWait passes, and returns the status. It
// heartbeats the status at every poll. It changes nothing, so a retry on another
// worker simply watches on.
func (s *Swarm) WatchCARotation(ctx context.Context, req WatchCARotationRequest) (CAStatus, error) {
	m := req.Manager
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return CAStatus{}, err
	}
	defer cli.Close()
	maxWait := req.MaxWait.Std()
	if maxWait <= 0 {
		maxWait = time.Minute
	}
	deadline := time.Now().Add(maxWait)
	for {
		st, _, err := s.caStatus(ctx, m, cli)
		if err != nil {
			return st, err
		}
		if rotationDone(st, req.OldRoot) || st.key() != req.Seen || time.Now().After(deadline) {
			return st, nil
		}
		activity.RecordHeartbeat(ctx, st.Counts())
		if err := sleepCtx(ctx, s.poll); err != nil {
			return st, err
		}
	}
}

// rotationDone: the swarm is done rotating and no longer trusts oldRoot.
func rotationDone(st CAStatus, oldRoot string) bool {
	return st.Done() && (oldRoot == "" || st.RootFingerprint != oldRoot)
}

// RotationDone reports whether st ends a rotation away from oldRoot ("" if unknown).
func RotationDone(st CAStatus, oldRoot string) bool { return rotationDone(st, oldRoot) }
