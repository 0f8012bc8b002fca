// goplugin-kv: a kv.v1.KV plugin written with HashiCorp go-plugin's own
// plugin.Serve, nothing of plugd. plugd's tests launch it through the host
// library and the broker to show that go-plugin plugins run under plugd
// unchanged (docs/go-plugin.md).
//
// Data lives in memory and, when --data FILE or KV_DATA_FILE names a file,
// is kept there as JSON (rewritten on every change), so it survives
// restarts.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"io/ioutil"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"goplugintest/shared"
	kvv1 "kv/v1"
)

type store struct {
	mu     sync.Mutex
	data   map[string][]byte
	file   string
	logger hclog.Logger
}

func (s *store) load() error {
	if s.file == "" {
		return nil
	}
	raw, err := ioutil.ReadFile(s.file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, &s.data)
}

// saveLocked writes the data file atomically (a temp file renamed over it).
func (s *store) saveLocked() error {
	if s.file == "" {
		return nil
	}
	raw, err := json.Marshal(s.data)
	if err != nil {
		return err
	}
	tmp, err := ioutil.TempFile(filepath.Dir(s.file), ".kv-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), s.file)
}

func (s *store) Get(_ context.Context, req *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	value, ok := s.data[req.Key]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no key %q", req.Key)
	}
	return &kvv1.GetResponse{Value: value}, nil
}

func (s *store) Put(_ context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	if req.Key == "" {
		return nil, status.Error(codes.InvalidArgument, "the key is empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[req.Key] = req.Value
	if err := s.saveLocked(); err != nil {
		return nil, status.Errorf(codes.Internal, "cannot save %s: %v", s.file, err)
	}
	s.logger.Info("put", "key", req.Key, "bytes", len(req.Value))
	return &kvv1.PutResponse{}, nil
}

func (s *store) Delete(_ context.Context, req *kvv1.DeleteRequest) (*kvv1.DeleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, existed := s.data[req.Key]
	delete(s.data, req.Key)
	if err := s.saveLocked(); err != nil {
		return nil, status.Errorf(codes.Internal, "cannot save %s: %v", s.file, err)
	}
	return &kvv1.DeleteResponse{Existed: existed}, nil
}

func (s *store) keys(prefix string) []string {
	var keys []string
	for k := range s.data {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func (s *store) List(_ context.Context, req *kvv1.ListRequest) (*kvv1.ListResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &kvv1.ListResponse{Keys: s.keys(req.Prefix)}, nil
}

func (s *store) Scan(req *kvv1.ScanRequest, stream kvv1.KV_ScanServer) error {
	s.mu.Lock()
	var entries []*kvv1.Entry
	for _, k := range s.keys(req.Prefix) {
		entries = append(entries, &kvv1.Entry{Key: k, Value: s.data[k]})
	}
	s.mu.Unlock()
	for _, e := range entries {
		if err := stream.Send(e); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	// hclog's JSON lines on stderr, as go-plugin plugins usually log: the
	// launcher (plugd, or a go-plugin host) reads their "@level".
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "go-kv",
		Level:      hclog.Trace,
		Output:     os.Stderr,
		JSONFormat: true,
	})
	data := flag.String("data", os.Getenv("KV_DATA_FILE"), "the data file (JSON); empty: memory only")
	flag.Parse()
	s := &store{data: map[string][]byte{}, file: *data, logger: logger}
	if err := s.load(); err != nil {
		logger.Error("cannot load the data file", "file", s.file, "error", err)
		os.Exit(1)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: shared.Handshake,
		Plugins:         shared.PluginMap(s),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
	logger.Info("stopped")
}
