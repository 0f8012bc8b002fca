package plugd

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestConnectPolicy(t *testing.T) {
	own := uint32(os.Geteuid())
	p, err := connectPolicy("kv", "")
	if err != nil {
		t.Fatal(err)
	}
	if !p.allows(&syscall.Ucred{Uid: own}) || !p.allows(&syscall.Ucred{Uid: 0}) {
		t.Errorf("own uid and root must be allowed: %+v", p)
	}
	stranger := own + 4242
	if p.allows(&syscall.Ucred{Uid: stranger}) {
		t.Errorf("uid %d allowed by %+v", stranger, p)
	}
	p, err = connectPolicy("kv", "4242")
	if err != nil {
		t.Fatal(err)
	}
	if !p.allows(&syscall.Ucred{Uid: 4242}) {
		t.Errorf("the launcher's uid must be allowed: %+v", p)
	}
	p.uids[0].uid = 1000 // as if not run as root: root is listed once, as "root"
	msg := p.refusal(&syscall.Ucred{Uid: 777, Pid: 12})
	for _, want := range []string{"plugin kv refused the connection of uid 777 (pid 12)",
		"only root, uid 1000 (the plugin's own)", "uid 4242 (its launcher's)", "docs/security.md"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal %q lacks %q", msg, want)
		}
	}
	if _, err := connectPolicy("kv", "me"); err == nil ||
		!strings.Contains(err.Error(), `PLUGD_LAUNCHER_UID="me" is not a uid`) {
		t.Errorf("bad PLUGD_LAUNCHER_UID: got %v", err)
	}
}

// The allowed path: a real listener, a real gRPC server, our own uid.
func TestCheckedListenerServesOwner(t *testing.T) {
	dir, err := os.MkdirTemp("", "pc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "p.sock")
	policy, _ := connectPolicy("t", "")
	lis, err := listenChecked(path, policy)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0600 {
		t.Errorf("socket mode: %v %v, want 0600", st.Mode(), err)
	}
	server := grpc.NewServer()
	h := newHealth([]string{""})
	healthpb.RegisterHealthServer(server, h)
	go server.Serve(lis)
	defer server.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, "unix:"+path, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check: %v %v", resp, err)
	}
}

// The refused path, without a second uid: a connection handed to the
// refusal server gets PERMISSION_DENIED with its refusal, on every method.
func TestRefuserAnswersPermissionDenied(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	serverConn, err := net.FileConn(os.NewFile(uintptr(fds[0]), "server"))
	if err != nil {
		t.Fatal(err)
	}
	clientConn, err := net.FileConn(os.NewFile(uintptr(fds[1]), "client"))
	if err != nil {
		t.Fatal(err)
	}
	r := newRefuser(&net.UnixAddr{Name: "test", Net: "unix"})
	defer r.stop()
	policy, _ := connectPolicy("t", "")
	message := policy.refusal(&syscall.Ucred{Uid: 4321, Pid: 99})
	r.refuse(serverConn, message)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	used := false
	conn, err := grpc.DialContext(ctx, "passthrough:///refused", grpc.WithInsecure(),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
			if used {
				return nil, syscall.ECONNREFUSED
			}
			used = true
			return clientConn, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.PermissionDenied ||
		!strings.Contains(status.Convert(err).Message(), "refused the connection of uid 4321 (pid 99)") {
		t.Fatalf("Check on a refused connection: %v", err)
	}
}
