// plugd-go-kv: the kv.v1.KV service (proto/examples/kv/v1/kv.proto) in Go.
//
// The data file is --data FILE (or --data=FILE), else $KV_DATA_FILE, else
// kv-data.pb in the working directory. Its format is plugd-kv's (C++), so
// every KV plugin reads the others' files: the line "plugd-kv 1", then
// kv.v1.Entry messages, each preceded by its length as a varint. A missing
// file is an empty store; a corrupt one stops the start (exit 1) naming the
// file. Every Put and Delete rewrites the file atomically before answering.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvv1 "kv/v1"
	plugd "plugd/sdk"
)

// goPluginCookie is the KV example application's go-plugin cookie, as
// plugd-kv (C++) accepts: a go-plugin host with that HandshakeConfig can load
// plugd-go-kv too (docs/go-plugin.md).
const goPluginCookie = "KV_PLUGIN=plugd-kv-example-1"

func main() {
	data := flag.String("data", defaultDataFile(), "the data file")
	cookie := flag.String("go-plugin-cookie", goPluginCookie,
		"the go-plugin cookie accepted, KEY=VALUE (go-plugin mode)")
	flag.Parse()
	key, value := *cookie, ""
	if eq := strings.Index(*cookie, "="); eq >= 0 {
		key, value = (*cookie)[:eq], (*cookie)[eq+1:]
	}
	p := plugd.New("kv", "1.0.0").GoPlugin(key, value)
	store := &Store{path: *data}
	p.OnStart(store.Load)
	p.RegisterServices(func(s *grpc.Server) {
		kvv1.RegisterKVServer(s, &server{store: store, plugin: p})
	})
	os.Exit(p.Serve())
}

// defaultDataFile is $KV_DATA_FILE, else kv-data.pb.
func defaultDataFile() string {
	if path := os.Getenv("KV_DATA_FILE"); path != "" {
		return path
	}
	return "kv-data.pb"
}

// server serves kv.v1.KV over a Store.
type server struct {
	store  *Store
	plugin *plugd.Plugin
}

func checkKey(key string) error {
	if key == "" {
		return status.Error(codes.InvalidArgument, "the key is empty")
	}
	return nil
}

func (s *server) Get(ctx context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	if err := checkKey(req.GetKey()); err != nil {
		return nil, err
	}
	value, ok := s.store.Get(req.GetKey())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no key %q", req.GetKey())
	}
	return &kvv1.GetResponse{Value: value}, nil
}

func (s *server) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	if err := checkKey(req.GetKey()); err != nil {
		return nil, err
	}
	if err := s.store.Put(req.GetKey(), req.GetValue()); err != nil {
		return nil, saveError(err)
	}
	return &kvv1.PutResponse{}, nil
}

func (s *server) Delete(ctx context.Context, req *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	if err := checkKey(req.GetKey()); err != nil {
		return nil, err
	}
	existed, err := s.store.Delete(req.GetKey())
	if err != nil {
		return nil, saveError(err)
	}
	return &kvv1.DeleteResponse{Existed: existed}, nil
}

func (s *server) List(ctx context.Context, req *kvv1.ListRequest) (*kvv1.ListResponse, error) {
	var keys []string
	for _, e := range s.store.Matching(req.GetPrefix()) {
		keys = append(keys, e.Key)
	}
	return &kvv1.ListResponse{Keys: keys}, nil
}

// Scan streams the matching entries in key order and ends early, with
// UNAVAILABLE, when the plugin shuts down.
func (s *server) Scan(req *kvv1.ScanRequest, stream kvv1.KV_ScanServer) error {
	for _, e := range s.store.Matching(req.GetPrefix()) {
		if s.plugin.ShuttingDown() {
			return status.Error(codes.Unavailable, "the plugin is shutting down")
		}
		if err := stream.Send(e); err != nil {
			return err
		}
	}
	return nil
}

func saveError(err error) error {
	plugd.Errorf("%v", err)
	return status.Error(codes.Internal, fmt.Sprint(err))
}
