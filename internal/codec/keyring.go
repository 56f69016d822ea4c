package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// KeysEnv is the environment variable that may hold a keyring instead of a file:
// the same "ID BASE64KEY" entries, separated by newlines or commas.
const KeysEnv = "CLUSTERFLOW_CODEC_KEYS"

// keySize is AES-256's key length in bytes.
const keySize = 32

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Keyring holds the AES-256 keys payloads are encrypted with, by key ID. The first
// key listed is the current one: it encrypts every new payload. All keys decrypt, so
// rotating a key is adding a new first line and keeping the old ones for as long as
// histories written with them are kept.
type Keyring struct {
	current string
	ids     []string // in the order listed
	aeads   map[string]cipher.AEAD
}

// Current is the ID of the key that encrypts new payloads.
func (k *Keyring) Current() string { return k.current }

// IDs lists every key ID, the current one first.
func (k *Keyring) IDs() []string { return append([]string(nil), k.ids...) }

// String names the keys, never their material, so that a keyring is safe to log.
func (k *Keyring) String() string {
	return fmt.Sprintf("keyring(current %s; %s)", k.current, strings.Join(k.ids, ", "))
}

// LoadKeyFile reads a keyring file: one "ID BASE64KEY" a line, the current key first;
// blank lines and lines starting with # are skipped. It refuses a file that other
// users may read or write: chmod 600 it.
func LoadKeyFile(path string) (*Keyring, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("codec key file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("codec key file %s: not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o007 != 0 {
		return nil, fmt.Errorf("codec key file %s is open to other users (mode %04o): run chmod 600 %s", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("codec key file: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	return parse(lines, func(i int) string {
		if i < 0 {
			return "codec key file " + path
		}
		return fmt.Sprintf("codec key file %s:%d", path, i+1)
	})
}

// ParseKeys reads a keyring from the value of KeysEnv: "ID BASE64KEY" entries
// separated by newlines or commas, the current key first.
func ParseKeys(value string) (*Keyring, error) {
	entries := strings.FieldsFunc(value, func(r rune) bool { return r == '\n' || r == ',' })
	return parse(entries, func(i int) string {
		if i < 0 {
			return KeysEnv
		}
		return fmt.Sprintf("%s entry %d", KeysEnv, i+1)
	})
}

// parse builds a keyring from entries; where names entry i in errors (and the whole
// source for i < 0). Errors name the entry and the field, and quote nothing from the
// entry, the key ID included: when the fields are swapped or run together, what
// stands where the ID belongs may be a key.
func parse(entries []string, where func(i int) string) (*Keyring, error) {
	k := &Keyring{aeads: map[string]cipher.AEAD{}}
	seen := map[string]int{}
	for i, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" || strings.HasPrefix(e, "#") {
			continue
		}
		fields := strings.Fields(e)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s: want \"ID BASE64KEY\", found %d fields", where(i), len(fields))
		}
		id := fields[0]
		if _, err := decodeKey(id); err == nil {
			return nil, fmt.Errorf("%s: the first field is a 32-byte base64 key where the key ID belongs: write \"ID BASE64KEY\"", where(i))
		}
		if !keyIDPattern.MatchString(id) {
			return nil, fmt.Errorf("%s: key ID: use 1 to 64 letters, digits, '.', '_' or '-' (is the line \"ID BASE64KEY\"?)", where(i))
		}
		if j, dup := seen[id]; dup {
			return nil, fmt.Errorf("%s: key ID repeats %s", where(i), where(j))
		}
		key, err := decodeKey(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%s: key: %w", where(i), err)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("%s: key: %w", where(i), err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("%s: key: %w", where(i), err)
		}
		seen[id] = i
		k.ids = append(k.ids, id)
		k.aeads[id] = aead
	}
	if len(k.ids) == 0 {
		return nil, errors.New(where(-1) + ": no keys found")
	}
	k.current = k.ids[0]
	return k, nil
}

// decodeKey accepts standard or URL-safe base64, padded or not, of exactly 32 bytes.
func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != keySize {
				return nil, fmt.Errorf("%d bytes; AES-256 needs %d (make one with: head -c 32 /dev/urandom | base64)", len(b), keySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}
