package compose

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// MaxObjectSize is the largest secret or config content read: swarm refuses a
// secret over 500 KiB, and configs are held to the same bound.
const MaxObjectSize = 500 << 10

// LookupEnv reads a variable of the worker's environment (os.LookupEnv).
type LookupEnv func(string) (string, bool)

// ReadSource reads an object's content: its file inside root (through the
// same confinement as Load: no "..", no symbolic link out) or its environment
// variable. The content is for the engine only; errors never quote it.
func ReadSource(root string, src Source, env LookupEnv) ([]byte, error) {
	switch {
	case src.File != "" && src.Env != "":
		return nil, errors.New("a source is a file or an environment variable, not both")
	case src.Env != "":
		if env == nil {
			return nil, errors.New("no environment to read from")
		}
		v, ok := env(src.Env)
		if !ok {
			return nil, fmt.Errorf("environment variable %s is not set on the worker", src.Env)
		}
		if len(v) > MaxObjectSize {
			return nil, fmt.Errorf("environment variable %s is larger than %d bytes", src.Env, MaxObjectSize)
		}
		return []byte(v), nil
	case src.File != "":
		c, err := openConfinement(root)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		rel, err := c.rel(".", src.File)
		if err != nil {
			return nil, err
		}
		return c.readFile(rel, src.File, MaxObjectSize)
	}
	return nil, errors.New("the object has no source (an external object is not read)")
}

// Digest is "sha256:HEX" of an object's content, for VersionedName and for
// telling whether a re-run changes anything. Only the digest leaves the worker.
func Digest(root string, src Source, env LookupEnv) (string, error) {
	data, err := ReadSource(root, src, env)
	if err != nil {
		return "", err
	}
	return ContentDigest(data), nil
}

// ContentDigest is the digest of content already read.
func ContentDigest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}
