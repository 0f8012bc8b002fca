package plugd

// Who may connect (docs/security.md): the plugin's socket accepts only its
// own effective uid, root, and the launcher's uid (PLUGD_LAUNCHER_UID).
// gRPC-go tells a server nothing about the uid behind a Unix socket, so the
// listener handed to grpc.Server.Serve checks SO_PEERCRED once per
// connection in Accept; calls on an accepted connection cost nothing more.
// A refused connection is served by a second gRPC server whose every method
// answers PERMISSION_DENIED saying which uid was refused and why, so the
// caller sees a real gRPC status instead of a dropped connection.

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// allowedUID is a uid that may connect and whose it is ("the plugin's own").
type allowedUID struct {
	uid   uint32
	whose string
}

// peerPolicy says who may connect. Root always may.
type peerPolicy struct {
	what       string // "plugin kv"
	uids       []allowedUID
	howToAllow string
}

// connectPolicy is the plugin's policy: its own effective uid, root, and
// launcherUID (the value of PLUGD_LAUNCHER_UID; may be empty).
func connectPolicy(name, launcherUID string) (peerPolicy, error) {
	own := uint32(os.Geteuid())
	policy := peerPolicy{
		what: "plugin " + name,
		uids: []allowedUID{{own, "the plugin's own"}},
		howToAllow: "call it through the plugd broker or host that launched it " +
			"(docs/security.md)",
	}
	if launcherUID != "" {
		uid, err := strconv.ParseUint(launcherUID, 10, 32)
		if err != nil || uid == 1<<32-1 {
			return policy, fmt.Errorf("PLUGD_LAUNCHER_UID=%q is not a uid; the launcher must set "+
				"it to its effective uid (a decimal number) or leave it unset", launcherUID)
		}
		if uint32(uid) != own {
			policy.uids = append(policy.uids, allowedUID{uint32(uid), "its launcher's"})
		}
	}
	return policy, nil
}

func (p peerPolicy) allows(cred *syscall.Ucred) bool {
	if cred.Uid == 0 {
		return true
	}
	for _, a := range p.uids {
		if a.uid == cred.Uid {
			return true
		}
	}
	return false
}

// refusal is the PERMISSION_DENIED message for a refused peer.
func (p peerPolicy) refusal(cred *syscall.Ucred) string {
	who := []string{"root"}
	for _, a := range p.uids {
		if a.uid == 0 {
			continue // root, above
		}
		who = append(who, fmt.Sprintf("uid %d (%s)", a.uid, a.whose))
	}
	text := fmt.Sprintf("%s refused the connection of uid %d (pid %d): only %s may connect",
		p.what, cred.Uid, cred.Pid, strings.Join(who, ", "))
	if p.howToAllow != "" {
		text += "; " + p.howToAllow
	}
	return text
}

// peerCred reads SO_PEERCRED of a connected Unix socket.
func peerCred(conn *net.UnixConn) (*syscall.Ucred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, credErr
}

// peerListener is a Unix listener whose Accept returns only connections of
// peers the policy allows; the others go to the refusal server.
type peerListener struct {
	*net.UnixListener
	policy  peerPolicy
	refuser *refuser
}

// listenChecked listens on path, a socket file of mode 0600, and starts the
// refusal server.
func listenChecked(path string, policy peerPolicy) (*peerListener, error) {
	// bind() gives the file the socket inode's mode less the umask: set it
	// before bind, so the file is never looser than 0600, then exactly 0600.
	config := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = syscall.Fchmod(int(fd), 0600) }); cerr != nil {
			return cerr
		}
		return err
	}}
	lis, err := config.Listen(context.Background(), "unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0600); err != nil {
		lis.Close()
		return nil, err
	}
	unix := lis.(*net.UnixListener)
	return &peerListener{UnixListener: unix, policy: policy, refuser: newRefuser(unix.Addr())}, nil
}

// Accept returns the next allowed connection.
func (l *peerListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.UnixListener.AcceptUnix()
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(conn)
		if err != nil {
			Warnf("dropping a connection whose peer is unknown: %v", err)
			conn.Close()
			continue
		}
		if l.policy.allows(cred) {
			return conn, nil
		}
		message := l.policy.refusal(cred)
		Warnf("%s", message)
		l.refuser.refuse(conn, message)
	}
}

// Close stops accepting and ends refused peers' connections.
func (l *peerListener) Close() error {
	err := l.UnixListener.Close()
	l.refuser.stop()
	return err
}

// refuser serves refused connections: every method of every service
// answers PERMISSION_DENIED with the refusal.
type refuser struct {
	server   *grpc.Server
	conns    chan net.Conn
	done     chan struct{}
	addr     net.Addr
	stopOnce sync.Once
}

// refusedConn carries its refusal to the handler, through its RemoteAddr.
type refusedConn struct {
	net.Conn
	message string
}

type refusedAddr struct{ message string }

func (refusedAddr) Network() string        { return "unix" }
func (a refusedAddr) String() string       { return "refused peer" }
func (c refusedConn) RemoteAddr() net.Addr { return refusedAddr{c.message} }

func newRefuser(addr net.Addr) *refuser {
	r := &refuser{conns: make(chan net.Conn), done: make(chan struct{}), addr: addr}
	r.server = grpc.NewServer(grpc.UnknownServiceHandler(
		func(srv interface{}, stream grpc.ServerStream) error {
			message := "this socket refused the caller's uid (see docs/security.md)"
			if p, ok := peer.FromContext(stream.Context()); ok {
				if a, ok := p.Addr.(refusedAddr); ok {
					message = a.message
				}
			}
			return status.Error(codes.PermissionDenied, message)
		}))
	go r.server.Serve(r)
	return r
}

// refuse hands conn to the refusal server without blocking the caller.
func (r *refuser) refuse(conn net.Conn, message string) {
	c := refusedConn{conn, message}
	go func() {
		select {
		case r.conns <- c:
		case <-r.done:
			conn.Close()
		}
	}()
}

// stop ends the refusal server and its connections.
func (r *refuser) stop() {
	r.Close()
	r.server.Stop()
}

// Accept, Close and Addr make the refuser the refusal server's listener.
func (r *refuser) Accept() (net.Conn, error) {
	select {
	case c := <-r.conns:
		return c, nil
	case <-r.done:
		return nil, errRefuserClosed
	}
}

func (r *refuser) Close() error {
	r.stopOnce.Do(func() { close(r.done) })
	return nil
}

func (r *refuser) Addr() net.Addr { return r.addr }

type refuserClosedError struct{}

func (refuserClosedError) Error() string { return "the refusal listener is closed" }

var errRefuserClosed error = refuserClosedError{}
