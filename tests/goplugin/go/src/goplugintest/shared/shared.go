// Package shared is the KV example application's go-plugin contract, as a
// go-plugin application defines it: the handshake its host and plugins
// agree on, and the plugin type that carries kv.v1.KV over gRPC. Both the
// Go plugin (kvplugin) and the Go host test (kvhost) use it; plugd-kv (C++)
// accepts the same handshake (plugin-sdk/cpp/examples/kv).
package shared

import (
	"context"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	kvv1 "kv/v1"
)

// Handshake is the KV application's plugin.HandshakeConfig.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "KV_PLUGIN",
	MagicCookieValue: "plugd-kv-example-1",
}

// PluginName is the name the KV plugin is dispensed under.
const PluginName = "kv"

// KVPlugin serves and dispenses kv.v1.KV over gRPC (no net/rpc).
type KVPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the service a plugin serves; unused by hosts.
	Impl kvv1.KVServer
}

// GRPCServer registers the KV service on the plugin's gRPC server.
func (p *KVPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	kvv1.RegisterKVServer(s, p.Impl)
	return nil
}

// GRPCClient returns a KV client on the host's connection to the plugin.
func (p *KVPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return kvv1.NewKVClient(c), nil
}

// PluginMap is the plugin set of protocol version 1.
func PluginMap(impl kvv1.KVServer) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &KVPlugin{Impl: impl}}
}
