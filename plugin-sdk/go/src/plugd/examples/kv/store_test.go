package main

import (
	"io/ioutil"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func tempStore(t *testing.T) *Store {
	dir, err := ioutil.TempDir("", "plugd-go-kv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &Store{path: filepath.Join(dir, "kv.pb")}
}

// The file format, byte for byte: the magic line, then each entry's size
// as a varint and the kv.v1.Entry bytes (field 1 key, field 2 value),
// sorted by key.
func TestTheFileFormat(t *testing.T) {
	s := tempStore(t)
	if err := s.Load(); err != nil { // no file: empty
		t.Fatal(err)
	}
	if err := s.Put("b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	got, err := ioutil.ReadFile(s.path)
	if err != nil {
		t.Fatal(err)
	}
	want := "plugd-kv 1\n" + "\x06\x0a\x01a\x12\x011" + "\x06\x0a\x01b\x12\x012"
	if string(got) != want {
		t.Errorf("file %q, want %q", got, want)
	}
	again := &Store{path: s.path}
	if err := again.Load(); err != nil {
		t.Fatal(err)
	}
	if v, ok := again.Get("b"); !ok || string(v) != "2" {
		t.Errorf("b after a reload: %q %v", v, ok)
	}
	if existed, err := again.Delete("a"); !existed || err != nil {
		t.Errorf("Delete: %v %v", existed, err)
	}
	if existed, err := again.Delete("a"); existed || err != nil {
		t.Errorf("Delete again: %v %v", existed, err)
	}
}

func TestCorruptFilesAreNamed(t *testing.T) {
	for _, tc := range []struct{ contents, why string }{
		{"garbage\n", `it does not start with "plugd-kv 1"`},
		{"plugd-kv 1\n\x06\x0a\x01a", "entry 1 is unreadable"},
		{"plugd-kv 1\n\x02\x0a\x00\x05\xff\xff\xff\xff\xff", "entry 2 is unreadable"},
	} {
		s := tempStore(t)
		if err := ioutil.WriteFile(s.path, []byte(tc.contents), 0o600); err != nil {
			t.Fatal(err)
		}
		err := s.Load()
		if err == nil || !strings.Contains(err.Error(), "the data file "+s.path+" is corrupt ("+tc.why+")") {
			t.Errorf("%q: %v, want %q", tc.contents, err, tc.why)
		}
	}
}
