// bench-goplugin-echo: the go-plugin peer of plugd-echo in the benchmarks
// (docs/benchmarks.md). An echo.v1.Echo plugin written with HashiCorp
// go-plugin's own plugin.Serve and its default gRPC server, nothing of
// plugd; bench-goplugin-host starts it. Run by hand, go-plugin explains that
// it is a plugin and exits 1.
package main

import (
	"context"
	"os"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"benchgoplugin/shared"
	echov1 "echo/v1"
)

type echoServer struct{}

// Echo returns the request's payload unchanged.
func (echoServer) Echo(_ context.Context, req *echov1.EchoRequest) (*echov1.EchoResponse, error) {
	return &echov1.EchoResponse{Payload: req.Payload}, nil
}

func main() {
	// Warnings and errors only: the host relays every stderr line, and a
	// benchmark should not time log traffic.
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "bench-goplugin-echo",
		Level:      hclog.Warn,
		Output:     os.Stderr,
		JSONFormat: true,
	})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: shared.Handshake,
		Plugins:         shared.PluginMap(echoServer{}),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
}
