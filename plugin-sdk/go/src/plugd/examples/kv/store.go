package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/ioutil"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/golang/protobuf/proto"

	kvv1 "kv/v1"
	plugd "plugd/sdk"
)

// magic starts every data file.
const magic = "plugd-kv 1\n"

// Store is the key-value data, kept in memory and written through to a file.
type Store struct {
	path string

	mu   sync.Mutex
	data map[string][]byte
}

// Load reads the data file; a missing or empty file is an empty store.
func (s *Store) Load() error {
	contents, err := ioutil.ReadFile(s.path)
	if os.IsNotExist(err) {
		s.data = map[string][]byte{}
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot read the data file %s: %v", s.path, err)
	}
	data, err := decode(contents)
	if err != nil {
		return fmt.Errorf("the data file %s is corrupt (%v); move it away to start with an empty store",
			s.path, err)
	}
	s.mu.Lock()
	s.data = data
	s.mu.Unlock()
	plugd.Infof("loaded %d keys from %s", len(data), s.path)
	return nil
}

func decode(contents []byte) (map[string][]byte, error) {
	data := map[string][]byte{}
	if len(contents) == 0 {
		return data, nil
	}
	if !bytes.HasPrefix(contents, []byte(magic)) {
		return nil, fmt.Errorf("it does not start with %q", strings.TrimSpace(magic))
	}
	rest := contents[len(magic):]
	for n := 1; len(rest) > 0; n++ {
		size, used := binary.Uvarint(rest)
		if used <= 0 || size > uint64(len(rest)-used) {
			return nil, fmt.Errorf("entry %d is unreadable", n)
		}
		var entry kvv1.Entry
		if err := proto.Unmarshal(rest[used:used+int(size)], &entry); err != nil {
			return nil, fmt.Errorf("entry %d is unreadable", n)
		}
		data[entry.GetKey()] = entry.GetValue()
		rest = rest[used+int(size):]
	}
	return data, nil
}

// saveLocked writes every entry, sorted by key, to a temporary file, syncs
// it, renames it over the data file and syncs the directory.
func (s *Store) saveLocked() error {
	keys := make([]string, 0, len(s.data))
	for k := range s.data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	buf := bytes.NewBufferString(magic)
	var size [binary.MaxVarintLen64]byte
	for _, k := range keys {
		blob, err := proto.Marshal(&kvv1.Entry{Key: k, Value: s.data[k]})
		if err != nil {
			return fmt.Errorf("cannot encode key %q: %v", k, err)
		}
		buf.Write(size[:binary.PutUvarint(size[:], uint64(len(blob)))])
		buf.Write(blob)
	}
	temp := s.path + ".tmp"
	if err := writeSynced(temp, buf.Bytes()); err != nil {
		return fmt.Errorf("cannot write %s: %v", temp, err)
	}
	if err := os.Rename(temp, s.path); err != nil {
		return fmt.Errorf("cannot replace the data file %s: %v", s.path, err)
	}
	dir, err := os.Open(filepath.Dir(s.path))
	if err != nil {
		return fmt.Errorf("cannot sync the directory of %s: %v", s.path, err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("cannot sync the directory of %s: %v", s.path, err)
	}
	return nil
}

func writeSynced(path string, contents []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(contents); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Get returns a key's value.
func (s *Store) Get(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	value, ok := s.data[key]
	return value, ok
}

// Put sets a key and saves. On a failed save the store keeps its old state.
func (s *Store) Put(key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.data[key]
	s.data[key] = append([]byte(nil), value...)
	if err := s.saveLocked(); err != nil {
		if had {
			s.data[key] = old
		} else {
			delete(s.data, key)
		}
		return err
	}
	return nil
}

// Delete removes a key and saves; it reports whether the key existed.
func (s *Store) Delete(key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.data[key]
	if !had {
		return false, nil
	}
	delete(s.data, key)
	if err := s.saveLocked(); err != nil {
		s.data[key] = old
		return false, err
	}
	return true, nil
}

// Matching returns the entries whose key starts with prefix, sorted by key.
func (s *Store) Matching(prefix string) []*kvv1.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*kvv1.Entry
	for k, v := range s.data {
		if strings.HasPrefix(k, prefix) {
			out = append(out, &kvv1.Entry{Key: k, Value: v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
