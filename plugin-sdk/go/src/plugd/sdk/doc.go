// Package plugd writes plugd plugins in Go. Its import path is "plugd/sdk":
//
//	import plugd "plugd/sdk"
//
// A plugin is a program that a plugd host or the plugd broker launches; it
// serves gRPC on a Unix socket and announces it with one line on stdout
// (docs/protocol.md). This package does all of that, so a plugin's main is a
// few lines:
//
//	func main() {
//		p := plugd.New("hash", "1.0.0")
//		p.Func("sha256", "sha256 S: the SHA-256 digest of S, in hex", sha256Hex,
//			plugd.Required("s", plugd.String, "the text to hash"))
//		os.Exit(p.Serve())
//	}
//
//	func sha256Hex(args plugd.Args) (*structpb.Value, error) {
//		s, err := args.String(0)
//		if err != nil {
//			return nil, err // INVALID_ARGUMENT: sha256: argument 1 (s) must be a string, got number 3
//		}
//		sum := sha256.Sum256([]byte(s))
//		return plugd.StringValue(hex.EncodeToString(sum[:])), nil
//	}
//
// A typed plugin registers its generated gRPC services instead (or as well):
//
//	p.RegisterServices(func(s *grpc.Server) { kvv1.RegisterKVServer(s, store) })
//
// Serve checks the magic cookie (run by hand, the plugin explains itself and
// returns 1), negotiates the application protocol version, listens on
// PLUGD_SOCKET with the PLUGD_MAX_MESSAGE_BYTES limit, serves
// grpc.health.v1.Health, plugd.v1.Control, plugd.v1.Functions (when any
// function is registered), gRPC reflection and the author's services,
// prints the handshake line, and shuts down gracefully on Control.Shutdown,
// SIGTERM and SIGINT: health turns NOT_SERVING, health Watch streams end,
// in-flight calls get PLUGD_SHUTDOWN_GRACE_MS, and Serve returns 0.
//
// Logs: Debugf, Infof, Warnf and Errorf write "[LEVEL] message" lines to
// stderr, which plugd launchers read the level from; PLUGD_LOG_LEVEL sets
// the minimum level.
//
// It builds in GOPATH mode against Debian's grpc-go 1.33 and
// github.com/golang/protobuf 1.3 (protobuf APIv1): google.protobuf.Value is
// github.com/golang/protobuf/ptypes/struct, imported as structpb. The
// generated stubs are the packages "plugd/v1" and "kv/v1", built into
// build/go by the plugd build. See docs/sdk-go.md.
package plugd
