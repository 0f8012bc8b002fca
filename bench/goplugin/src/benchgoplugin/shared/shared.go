// Package shared is the benchmark's go-plugin contract: the handshake the
// go-plugin echo host (echohost) and plugin (echoplugin) agree on, and the
// plugin type that carries echo.v1.Echo over gRPC, written the way a
// go-plugin application writes it (compare tests/goplugin/go's KV example).
package shared

import (
	"context"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	echov1 "echo/v1"
)

// Handshake is the echo benchmark's plugin.HandshakeConfig.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "BENCH_ECHO_PLUGIN",
	MagicCookieValue: "plugd-bench-echo-1",
}

// PluginName is the name the echo plugin is dispensed under.
const PluginName = "echo"

// EchoPlugin serves and dispenses echo.v1.Echo over gRPC (no net/rpc).
type EchoPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the service a plugin serves; unused by hosts.
	Impl echov1.EchoServer
}

// GRPCServer registers the echo service on the plugin's gRPC server.
func (p *EchoPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	echov1.RegisterEchoServer(s, p.Impl)
	return nil
}

// GRPCClient returns an echo client on the host's connection to the plugin.
func (p *EchoPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return echov1.NewEchoClient(c), nil
}

// PluginMap is the plugin set of protocol version 1.
func PluginMap(impl echov1.EchoServer) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &EchoPlugin{Impl: impl}}
}
