// plugd-go-hash: digests and encodings of strings, a plugd functions plugin.
//
//	calc --plugin build/bin/plugd-go-hash sha256 abc
//	calc --plugin build/bin/plugd-go-hash base64 'hello, world' true
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"

	structpb "github.com/golang/protobuf/ptypes/struct"

	plugd "plugd/sdk"
)

func main() {
	p := plugd.New("hash", "1.0.0")
	p.Func("sha256", "sha256 S...: the SHA-256 digest of the strings joined, in hex", sha256Hex,
		plugd.Variadic("s", plugd.String, true, "the text to hash"))
	p.Func("base64", "base64 S [URL]: S in base64; URL=true for the URL-safe alphabet", base64Encode,
		plugd.Required("s", plugd.String, "the text to encode"),
		plugd.Optional("url", plugd.Bool, "true for the URL-safe alphabet"))
	p.Func("hex", "hex S: the bytes of S in hexadecimal", hexEncode,
		plugd.Required("s", plugd.String, "the text to encode"))
	os.Exit(p.Serve())
}

func sha256Hex(args plugd.Args) (*structpb.Value, error) {
	parts, err := args.Strings(0)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, s := range parts {
		h.Write([]byte(s))
	}
	return plugd.StringValue(hex.EncodeToString(h.Sum(nil))), nil
}

func base64Encode(args plugd.Args) (*structpb.Value, error) {
	s, err := args.String(0)
	if err != nil {
		return nil, err
	}
	url := false
	if args.Has(1) {
		if url, err = args.Bool(1); err != nil {
			return nil, err
		}
	}
	encoding := base64.StdEncoding
	if url {
		encoding = base64.URLEncoding
	}
	return plugd.StringValue(encoding.EncodeToString([]byte(s))), nil
}

func hexEncode(args plugd.Args) (*structpb.Value, error) {
	s, err := args.String(0)
	if err != nil {
		return nil, err
	}
	return plugd.StringValue(hex.EncodeToString([]byte(s))), nil
}
