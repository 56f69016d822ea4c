package codec

import (
	"bytes"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
)

// keyringVocabulary is the fixed text of the keyring parser's errors: a field that
// only repeats it is not key material.
const keyringVocabulary = KeysEnv + ` entry: want "ID BASE64KEY", found fields; the first field is a 32-byte base64 key ` +
	`where the key ID belongs: write; key ID: use 1 to 64 letters, digits, '.', '_' or '-' (is the line?); ` +
	`key ID repeats; key: not base64; bytes; AES-256 needs 32 (make one with: head -c 32 /dev/urandom | base64); no keys found`

// FuzzParseKeys feeds the keyring parser arbitrary text (a key file or
// CLUSTERFLOW_CODEC_KEYS): it must never panic, must never quote any field of an
// entry in an error (the ID neither: swapped fields put a key there), and an accepted
// keyring must encrypt and decrypt and print no key.
//
//	go test -fuzz=FuzzParseKeys -parallel 1 ./internal/codec
func FuzzParseKeys(f *testing.F) {
	const key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	urlKey := strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(key), "=")
	for _, s := range []string{
		"k1 " + key,
		"k2 " + key + "\nk1 " + strings.TrimRight(key, "="),
		"# comment\n\nk1 " + key + ",k2 " + key,
		"k1 " + key + "\nk1 " + key,
		"k1",
		"bad/id " + key,
		"k1 " + key[:20],
		"k1 " + urlKey,
		"",
		// Swapped, run together, or the wrong separator.
		key + " k1",
		urlKey + " k1",
		key + " " + key,
		urlKey + " " + key,
		"k1" + key,
		"k1=" + key,
		"k1:" + key,
		"\"k1\" \"" + key + "\"",
		"k1 " + key + " k2",
		"AAAAAAAAAAAAAAAAAAAAAA== k1", // a 16-byte gossip key where the ID belongs
		"AAAAAAAAAAAAAAAAAAAAAA " + key,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		entries := strings.FieldsFunc(value, func(r rune) bool { return r == '\n' || r == ',' })
		k, err := ParseKeys(value)
		if err != nil {
			for _, e := range entries {
				for _, field := range strings.Fields(e) {
					if len(field) >= 8 && strings.Contains(err.Error(), field) && !strings.Contains(keyringVocabulary, field) {
						t.Fatalf("error quotes a field of the input, which may be key material (%q): %v", field, err)
					}
				}
			}
			return
		}
		if k.Current() == "" || len(k.IDs()) == 0 {
			t.Fatalf("accepted a keyring without a current key: %v", k)
		}
		for _, e := range entries {
			if f := strings.Fields(e); len(f) == 2 && strings.Contains(k.String(), f[1]) {
				t.Fatalf("the keyring prints a key (%q): %s", f[1], k)
			}
		}
		c := New(k)
		in := []*commonpb.Payload{{Metadata: map[string][]byte{converter.MetadataEncoding: []byte("json/plain")}, Data: []byte(value)}}
		enc, err := c.Encode(in)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := c.Decode(enc)
		if err != nil || !bytes.Equal(dec[0].GetData(), in[0].GetData()) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzDecode feeds Decode arbitrary payloads as they could come back from the
// server or the codec endpoint: it must never panic, and must either pass a payload
// through, decrypt it, or say why not.
//
//	go test -fuzz=FuzzDecode -parallel 1 ./internal/codec
func FuzzDecode(f *testing.F) {
	const key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	k, err := ParseKeys("k1 " + key)
	if err != nil {
		f.Fatal(err)
	}
	c := New(k)
	enc, err := c.Encode([]*commonpb.Payload{{Metadata: map[string][]byte{converter.MetadataEncoding: []byte("json/plain")}, Data: []byte(`"hello"`)}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(Encoding), []byte("k1"), enc[0].GetData())
	f.Add([]byte(Encoding), []byte("k2"), enc[0].GetData())
	f.Add([]byte(Encoding), []byte("k1"), enc[0].GetData()[:20])
	f.Add([]byte("json/plain"), []byte(""), []byte(`"clear"`))
	f.Add([]byte(Encoding), []byte(""), []byte{})
	f.Fuzz(func(t *testing.T, encoding, keyID, data []byte) {
		p := &commonpb.Payload{Metadata: map[string][]byte{converter.MetadataEncoding: encoding, MetadataKeyID: keyID}, Data: data}
		out, err := c.Decode([]*commonpb.Payload{p})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "codec: ") {
				t.Fatalf("error without the codec's prefix: %v", err)
			}
			return
		}
		if len(out) != 1 || out[0] == nil {
			t.Fatalf("decoded %d payloads", len(out))
		}
	})
}
