package codec

import (
	"bytes"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
)

// FuzzParseKeys feeds the keyring parser arbitrary text (a key file or
// CLUSTERFLOW_CODEC_KEYS): it must never panic, must never quote key material in an
// error, and an accepted keyring must encrypt and decrypt.
//
//	go test -fuzz=FuzzParseKeys -parallel 1 ./internal/codec
func FuzzParseKeys(f *testing.F) {
	const key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	for _, s := range []string{
		"k1 " + key,
		"k2 " + key + "\nk1 " + strings.TrimRight(key, "="),
		"# comment\n\nk1 " + key + ",k2 " + key,
		"k1 " + key + "\nk1 " + key,
		"k1",
		"bad/id " + key,
		"k1 " + key[:20],
		"k1 " + strings.NewReplacer("+", "-", "/", "_").Replace(key),
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		k, err := ParseKeys(value)
		if err != nil {
			// Entries are "ID KEY": the ID may be quoted, anything after it not.
			for _, e := range strings.FieldsFunc(value, func(r rune) bool { return r == '\n' || r == ',' }) {
				f := strings.Fields(e)
				if len(f) == 0 || !keyIDPattern.MatchString(f[0]) {
					continue // refused for its ID, which the error quotes (escaped)
				}
				msg := strings.ReplaceAll(err.Error(), f[0], "")
				for _, field := range f[1:] {
					if len(field) >= 16 && strings.Contains(msg, field) {
						t.Fatalf("error quotes what may be key material %q: %v", field, err)
					}
				}
			}
			return
		}
		if k.Current() == "" || len(k.IDs()) == 0 {
			t.Fatalf("accepted a keyring without a current key: %v", k)
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
