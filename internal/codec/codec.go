// Package codec encrypts the payloads clusterflow writes to Temporal (workflow and
// activity inputs and results, query answers, memos, failure details) with
// AES-256-GCM, so that the history a Temporal cluster keeps holds no playbook,
// inventory or command in clear. Search attributes stay in clear: the server indexes
// them.
//
// An encrypted payload has the metadata encoding "binary/encrypted" and the ID of the
// key that encrypted it ("encryption-key-id"); its data is a random 12-byte nonce
// followed by the sealed, proto-marshalled original payload. Payloads that are not
// encrypted decode unchanged, so histories written before the codec was switched on
// stay readable.
//
// The Web UI decodes payloads through an HTTP endpoint (Handler) that this process
// serves on loopback; it holds the keys, the browser never does.
package codec

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"

	"github.com/clusterflow/clusterflow/internal/httpguard"
)

// Metadata of an encrypted payload.
const (
	Encoding      = "binary/encrypted"
	MetadataKeyID = "encryption-key-id"
)

// Codec is a converter.PayloadCodec that encrypts with the keyring's current key and
// decrypts with any of its keys.
type Codec struct{ keys *Keyring }

var _ converter.PayloadCodec = (*Codec)(nil)

// New returns a codec over keys.
func New(keys *Keyring) *Codec { return &Codec{keys: keys} }

// Keys is the codec's keyring.
func (c *Codec) Keys() *Keyring { return c.keys }

// DataConverter is the SDK's default data converter with this codec behind it: what
// clients and workers use when the codec is on, with FailureConverter.
func (c *Codec) DataConverter() converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c)
}

// FailureConverter is the SDK's default failure converter with failure messages and
// stack traces moved into an encrypted payload ("Encoded failure" is all Temporal
// keeps in clear): a command's output may end up in them.
func (c *Codec) FailureConverter() converter.FailureConverter {
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
		DataConverter:          c.DataConverter(),
		EncodeCommonAttributes: true,
	})
}

// Encode encrypts each payload with the current key.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	id := c.keys.current
	aead := c.keys.aeads[id]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("codec: encoding payload: %w", err)
		}
		nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("codec: nonce: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(Encoding),
				MetadataKeyID:              []byte(id),
			},
			// The key ID is authenticated with the data: a payload cannot be relabelled.
			Data: aead.Seal(nonce, nonce, plain, []byte(id)),
		}
	}
	return out, nil
}

// Decode decrypts encrypted payloads and passes the others through unchanged.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if !Encrypted(p) {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[MetadataKeyID])
		aead, ok := c.keys.aeads[id]
		if !ok {
			return nil, fmt.Errorf("codec: payload encrypted with key ID %q, which the keyring (%s) does not hold; add that key to decrypt it",
				id, strings.Join(c.keys.ids, ", "))
		}
		data := p.GetData()
		if len(data) < aead.NonceSize()+aead.Overhead() {
			return nil, fmt.Errorf("codec: payload encrypted with key ID %q is too short (%d bytes): truncated or not clusterflow's", id, len(data))
		}
		plain, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], []byte(id))
		if err != nil {
			return nil, fmt.Errorf("codec: payload encrypted with key ID %q does not decrypt: tampered with, or a different key under that ID", id)
		}
		var orig commonpb.Payload
		if err := proto.Unmarshal(plain, &orig); err != nil {
			return nil, fmt.Errorf("codec: decrypted payload (key ID %q): %w", id, err)
		}
		out[i] = &orig
	}
	return out, nil
}

// maxRequestBytes bounds a request to the HTTP endpoint (Temporal's own payload limit
// is 2 MiB per payload by default).
const maxRequestBytes = 16 << 20

// Handler serves POST /encode and POST /decode (the SDK's remote codec protocol, as
// the Web UI and `temporal` CLI speak it) on addr, the host:port it listens on, for
// browsers on the given origins (e.g. "http://127.0.0.1:8233"), answering their CORS
// preflight. A request from any other origin is refused, so that no web page the
// operator visits can use the endpoint; requests with no Origin header (curl, the CLI)
// are served. The endpoint decrypts for anyone who can reach it: bind it to loopback.
// On any other address (a container's 0.0.0.0, so that a published port reaches it)
// it decodes only: /encode, which would seal whatever anyone sends with the current
// key, is refused.
func Handler(c *Codec, origins []string, addr string) http.Handler {
	inner := converter.NewPayloadCodecHTTPHandler(c)
	encode := httpguard.Loopback(addr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" {
			if !slices.Contains(origins, origin) {
				http.Error(w, fmt.Sprintf("origin %s may not use this codec endpoint", origin), http.StatusForbidden)
				return
			}
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Add("Vary", "Origin")
			if r.Method == http.MethodOptions {
				w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
				w.Header().Set("Access-Control-Allow-Headers", "Content-Type, X-Namespace")
				w.Header().Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		if !encode && strings.HasSuffix(r.URL.Path, "/encode") {
			http.Error(w, fmt.Sprintf("this codec endpoint listens on %s, beyond loopback, and only decodes; "+
				"/encode is served by an endpoint on a loopback address", addr), http.StatusForbidden)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxRequestBytes)
		inner.ServeHTTP(w, r)
	})
}

// Encrypted reports whether p is a payload this codec encrypted.
func Encrypted(p *commonpb.Payload) bool {
	return bytes.Equal(p.GetMetadata()[converter.MetadataEncoding], []byte(Encoding))
}

// Serve serves h on addr (host:port) until stop is called, and returns the address it
// listens on.
func Serve(addr string, h http.Handler, logger *slog.Logger) (bound string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("codec endpoint: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && logger != nil {
			logger.Error("codec endpoint stopped", "error", err)
		}
	}()
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
