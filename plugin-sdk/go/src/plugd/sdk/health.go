package plugd

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// health serves grpc.health.v1.Health for a fixed set of names with one
// state. grpc-go's own health server is not used: its Watch streams stay
// open through a shutdown, and they must end (docs/protocol.md §3.1).
type health struct {
	names map[string]bool

	mu      sync.Mutex
	serving bool
	closed  bool
	changed chan struct{} // closed and replaced on every change
}

func newHealth(names []string) *health {
	h := &health{names: map[string]bool{}, serving: true, changed: make(chan struct{})}
	for _, n := range names {
		h.names[n] = true
	}
	return h
}

func (h *health) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *health) setServing(serving bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.serving == serving {
		return
	}
	h.serving = serving
	h.notifyLocked()
}

// close turns every name NOT_SERVING for good and ends every Watch.
func (h *health) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.serving = false
	h.closed = true
	h.notifyLocked()
}

func (h *health) statusLocked(service string) healthpb.HealthCheckResponse_ServingStatus {
	switch {
	case !h.names[service]:
		return healthpb.HealthCheckResponse_SERVICE_UNKNOWN
	case h.serving:
		return healthpb.HealthCheckResponse_SERVING
	}
	return healthpb.HealthCheckResponse_NOT_SERVING
}

func (h *health) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.mu.Lock()
	st := h.statusLocked(req.GetService())
	h.mu.Unlock()
	if st == healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
		return nil, status.Errorf(codes.NotFound, "unknown service %q", req.GetService())
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

// Watch sends the state now and on every change; at shutdown it sends
// NOT_SERVING and ends with UNAVAILABLE.
func (h *health) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	for {
		h.mu.Lock()
		st, closed, changed := h.statusLocked(req.GetService()), h.closed, h.changed
		h.mu.Unlock()
		if st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		if closed {
			return status.Error(codes.Unavailable, "the plugin is shutting down")
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
	}
}
