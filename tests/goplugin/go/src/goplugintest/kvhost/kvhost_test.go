// Package kvhost tests go-plugin's side of plugd's go-plugin compatibility:
// a host written with HashiCorp go-plugin's own plugin.NewClient, exactly as
// a go-plugin application writes it, loads plugd's KV example plugins
// (plugd-kv in C++, plugd-py-kv in Python, plugd-node-kv in Node.js,
// plugd-go-kv in Go), calls them through the Go kv.v1 stubs and kills them
// with client.Kill().
//
// PLUGD_KV_PLUGINS lists the plugin executables, separated by ':' (the build
// sets it); every test runs against each.
package kvhost

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"goplugintest/shared"
	kvv1 "kv/v1"
)

// syncBuffer collects what go-plugin's goroutines write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type launch struct {
	client *plugin.Client
	cmd    *exec.Cmd
	logs   *syncBuffer // the host's hclog output (plugin stderr included)
	stderr *syncBuffer // the plugin's raw stderr
}

// forEachPlugin runs test against every plugin of PLUGD_KV_PLUGINS.
func forEachPlugin(t *testing.T, test func(t *testing.T, path string)) {
	list := os.Getenv("PLUGD_KV_PLUGINS")
	if list == "" {
		t.Fatal("PLUGD_KV_PLUGINS is not set: it must list the KV plugin executables, ':'-separated")
	}
	for _, path := range strings.Split(list, ":") {
		path := path
		t.Run(filepath.Base(path), func(t *testing.T) {
			// A plugin picks its socket in TMPDIR, and one that go-plugin
			// kills (after a version mismatch) cannot remove it: keep them
			// out of /tmp. Removed after the cleanups of `test` (LIFO).
			dir, err := os.MkdirTemp("", "kvh")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			t.Setenv("TMPDIR", dir)
			test(t, path)
		})
	}
}

// start configures a go-plugin client for the plugin at path the way a
// go-plugin application would.
func start(t *testing.T, path string, handshake plugin.HandshakeConfig) *launch {
	t.Helper()
	l := &launch{logs: &syncBuffer{}, stderr: &syncBuffer{}}
	l.cmd = exec.Command(path, "--data", filepath.Join(t.TempDir(), "kv.pb"))
	l.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  handshake,
		Plugins:          shared.PluginMap(nil),
		Cmd:              l.cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     20 * time.Second,
		Stderr:           l.stderr,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:   "host",
			Level:  hclog.Trace,
			Output: l.logs,
		}),
	})
	t.Cleanup(l.client.Kill) // idempotent
	return l
}

func TestLoadsPlugdKvCallsItAndKillsItCleanly(t *testing.T) {
	forEachPlugin(t, loadCallAndKill)
}

func loadCallAndKill(t *testing.T, path string) {
	l := start(t, path, shared.Handshake)
	rpc, err := l.client.Client()
	if err != nil {
		t.Fatalf("client.Client(): %v\nhost log:\n%s", err, l.logs)
	}
	if v := l.client.NegotiatedVersion(); v != 1 {
		t.Errorf("negotiated version %d, want 1", v)
	}
	// Ping is a health check of service "plugin".
	if err := rpc.Ping(); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	raw, err := rpc.Dispense(shared.PluginName)
	if err != nil {
		t.Fatalf("Dispense: %v", err)
	}
	kv := raw.(kvv1.KVClient)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, e := range []struct{ k, v string }{{"b", "2"}, {"a", "1"}} {
		if _, err := kv.Put(ctx, &kvv1.PutRequest{Key: e.k, Value: []byte(e.v)}); err != nil {
			t.Fatalf("Put %s: %v", e.k, err)
		}
	}
	got, err := kv.Get(ctx, &kvv1.GetRequest{Key: "a"})
	if err != nil || string(got.Value) != "1" {
		t.Errorf("Get a = %v, %v; want 1", got, err)
	}
	if _, err := kv.Get(ctx, &kvv1.GetRequest{Key: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("Get nope: %v; want NotFound", err)
	}
	list, err := kv.List(ctx, &kvv1.ListRequest{})
	if err != nil || strings.Join(list.Keys, ",") != "a,b" {
		t.Errorf("List = %v, %v; want [a b]", list, err)
	}
	scan, err := kv.Scan(ctx, &kvv1.ScanRequest{Prefix: "b"})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	var scanned []string
	for {
		e, err := scan.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Scan.Recv: %v", err)
		}
		scanned = append(scanned, e.Key+"="+string(e.Value))
	}
	if strings.Join(scanned, ",") != "b=2" {
		t.Errorf("Scan b = %v; want [b=2]", scanned)
	}

	// Kill: go-plugin closes its broker stream, calls
	// plugin.GRPCController/Shutdown and waits up to 2 s for the exit before
	// it would kill the process.
	l.client.Kill()
	if !l.client.Exited() {
		t.Fatal("the plugin has not exited after Kill")
	}
	ws := l.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		t.Errorf("the plugin was killed by signal %v, not stopped through Shutdown\nhost log:\n%s", ws.Signal(), l.logs)
	} else if ws.ExitStatus() != 0 {
		t.Errorf("the plugin exited with code %d, want 0\nhost log:\n%s", ws.ExitStatus(), l.logs)
	}
	logs := l.logs.String()
	if strings.Contains(logs, "plugin failed to exit gracefully") {
		t.Errorf("go-plugin had to kill the plugin:\n%s", logs)
	}
	// The plugin's own log lines reach the host's logger with their level.
	for _, want := range []string{
		"host." + filepath.Base(path) + ": [INFO] kv 1.0.0 serving on ",
		"go-plugin mode)",
		"plugin.GRPCController/Shutdown",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("host log lacks %q:\n%s", want, logs)
		}
	}
}

func TestWrongCookieIsExplained(t *testing.T) {
	forEachPlugin(t, wrongCookie)
}

func wrongCookie(t *testing.T, path string) {
	handshake := shared.Handshake
	handshake.MagicCookieValue = "another-application"
	l := start(t, path, handshake)
	_, err := l.client.Client()
	if err == nil {
		t.Fatal("client.Client() succeeded with a wrong cookie")
	}
	// go-plugin's own words: the plugin exited (or closed its stdout) before
	// it printed an address.
	if msg := err.Error(); !strings.Contains(msg, "plugin exited before we could connect") &&
		!strings.Contains(msg, "Unrecognized remote plugin message") {
		t.Errorf("client.Client() error %q", msg)
	}
	l.client.Kill() // waits for go-plugin's stderr reader
	stderr := l.stderr.String()
	for _, want := range []string{
		"This binary is a plugin (plugd plugin kv 1.0.0), not meant to be executed directly.",
		"A go-plugin host started it (PLUGIN_PROTOCOL_VERSIONS is set) without the magic cookie it accepts",
		`MagicCookieKey "KV_PLUGIN" and MagicCookieValue "plugd-kv-example-1"`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the plugin's stderr lacks %q:\n%s", want, stderr)
		}
	}
	if ws := l.cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() || ws.ExitStatus() != 1 {
		t.Errorf("the plugin ended with %v, want exit code 1", l.cmd.ProcessState)
	}
}

func TestNoCommonVersionIsExplained(t *testing.T) {
	forEachPlugin(t, noCommonVersion)
}

func noCommonVersion(t *testing.T, path string) {
	handshake := shared.Handshake
	handshake.ProtocolVersion = 7
	l := start(t, path, handshake)
	_, err := l.client.Client()
	if err == nil {
		t.Fatal("client.Client() succeeded with no version in common")
	}
	want := "Incompatible API version with plugin. Plugin version: 1, Client versions: [7]"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("client.Client() error %q, want %q", err, want)
	}
	l.client.Kill()
	stderr := l.stderr.String()
	wantStderr := "no protocol version in common: the host supports [7], the plugin supports [1]"
	if !strings.Contains(stderr, wantStderr) {
		t.Errorf("the plugin's stderr lacks %q:\n%s", wantStderr, stderr)
	}
}
