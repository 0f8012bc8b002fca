// bench-goplugin-host: the go-plugin side of the benchmarks' peer comparison
// (docs/benchmarks.md). A host written with HashiCorp go-plugin's own
// plugin.NewClient, as a go-plugin application writes it, that starts an
// echo.v1.Echo plugin (bench-goplugin-echo) and times it:
//
//	bench-goplugin-host --plugin PATH --mode latency|throughput|coldstart \
//	    --payload BYTES --calls N --inflight K
//
// It prints one JSON object on stdout with the fields of its mode:
//
//	latency     {"p50_us":..., "p99_us":...}   N sequential calls, after a
//	                                           warm-up, round trip each
//	throughput  {"calls_per_s":...}            N calls in total, K in flight
//	                                           (K goroutines on one client)
//	coldstart   {"cold_start_ms":...}          N times: NewClient, Client(),
//	                                           Dispense, the first successful
//	                                           Echo; the median, in ms
//
// GOMAXPROCS comes from the environment, which go-plugin passes on to the
// plugin. Errors go to stderr, with exit status 1.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/ioutil"
	"math"
	"os"
	"os/exec"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"benchgoplugin/shared"
	echov1 "echo/v1"
)

type options struct {
	plugin   string
	mode     string
	payload  int
	calls    int
	inflight int
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench-goplugin-host", flag.ContinueOnError)
	fs.SetOutput(ioutil.Discard)
	fs.StringVar(&o.plugin, "plugin", "", "the go-plugin echo plugin's executable")
	fs.StringVar(&o.mode, "mode", "", "latency, throughput or coldstart")
	fs.IntVar(&o.payload, "payload", 64, "payload size in bytes")
	fs.IntVar(&o.calls, "calls", 1000, "calls (latency, throughput) or plugin starts (coldstart)")
	fs.IntVar(&o.inflight, "inflight", 1, "calls in flight (throughput)")
	usage := "usage: bench-goplugin-host --plugin PATH --mode latency|throughput|coldstart --payload BYTES --calls N --inflight K"
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%v\n%s", err, usage)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), usage)
	}
	switch {
	case o.plugin == "":
		return o, fmt.Errorf("--plugin is required: the path of bench-goplugin-echo\n%s", usage)
	case o.mode != "latency" && o.mode != "throughput" && o.mode != "coldstart":
		return o, fmt.Errorf("--mode %q is not one of latency, throughput, coldstart", o.mode)
	case o.payload < 0 || o.payload > 64<<20:
		return o, fmt.Errorf("--payload %d is out of range [0, 64 MiB]", o.payload)
	case o.calls < 1:
		return o, fmt.Errorf("--calls %d must be at least 1", o.calls)
	case o.inflight < 1:
		return o, fmt.Errorf("--inflight %d must be at least 1", o.inflight)
	}
	if info, err := os.Stat(o.plugin); err != nil {
		return o, fmt.Errorf("--plugin %s: %v", o.plugin, err)
	} else if info.IsDir() || info.Mode()&0111 == 0 {
		return o, fmt.Errorf("--plugin %s is not an executable file", o.plugin)
	}
	return o, nil
}

// session is one started plugin and its dispensed echo client.
type session struct {
	client *plugin.Client
	echo   echov1.EchoClient
}

// start launches the plugin the way a go-plugin application does and
// dispenses its echo client. The caller kills it.
func start(path string, logger hclog.Logger) (*session, error) {
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  shared.Handshake,
		Plugins:          shared.PluginMap(nil),
		Cmd:              exec.Command(path),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger,
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("start %s: %v", path, err)
	}
	raw, err := rpc.Dispense(shared.PluginName)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("dispense %q from %s: %v", shared.PluginName, path, err)
	}
	return &session{client: client, echo: raw.(echov1.EchoClient)}, nil
}

// call sends one payload and checks that it came back.
func call(echo echov1.EchoClient, payload []byte, full bool) error {
	resp, err := echo.Echo(context.Background(), &echov1.EchoRequest{Payload: payload})
	if err != nil {
		return fmt.Errorf("Echo: %v", err)
	}
	if len(resp.Payload) != len(payload) || (full && !bytes.Equal(resp.Payload, payload)) {
		return fmt.Errorf("Echo returned %d bytes that differ from the %d sent", len(resp.Payload), len(payload))
	}
	return nil
}

// percentile of sorted durations (nearest rank), in microseconds.
func percentileUs(sorted []time.Duration, p float64) float64 {
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	if rank < 0 {
		rank = 0
	}
	return float64(sorted[rank].Nanoseconds()) / 1e3
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}

func warmUp(echo echov1.EchoClient, payload []byte, calls int) error {
	n := calls / 10
	if n < 10 {
		n = 10
	}
	if n > 1000 {
		n = 1000
	}
	for i := 0; i < n; i++ {
		if err := call(echo, payload, i == 0); err != nil {
			return err
		}
	}
	return nil
}

func latency(o options, payload []byte, logger hclog.Logger) (map[string]float64, error) {
	s, err := start(o.plugin, logger)
	if err != nil {
		return nil, err
	}
	defer s.client.Kill()
	if err := warmUp(s.echo, payload, o.calls); err != nil {
		return nil, err
	}
	times := make([]time.Duration, o.calls)
	for i := range times {
		t0 := time.Now()
		if err := call(s.echo, payload, false); err != nil {
			return nil, err
		}
		times[i] = time.Since(t0)
	}
	sortDurations(times)
	return map[string]float64{
		"p50_us": percentileUs(times, 50),
		"p99_us": percentileUs(times, 99),
	}, nil
}

func throughput(o options, payload []byte, logger hclog.Logger) (map[string]float64, error) {
	s, err := start(o.plugin, logger)
	if err != nil {
		return nil, err
	}
	defer s.client.Kill()
	if err := warmUp(s.echo, payload, o.calls); err != nil {
		return nil, err
	}
	var next int64 // calls handed out
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	t0 := time.Now()
	for w := 0; w < o.inflight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for atomic.AddInt64(&next, 1) <= int64(o.calls) {
				if err := call(s.echo, payload, false); err != nil {
					once.Do(func() { firstErr = err })
					atomic.StoreInt64(&next, int64(o.calls))
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if firstErr != nil {
		return nil, firstErr
	}
	return map[string]float64{
		"calls_per_s": float64(o.calls) / elapsed.Seconds(),
	}, nil
}

func coldStart(o options, payload []byte, logger hclog.Logger) (map[string]float64, error) {
	times := make([]time.Duration, o.calls)
	for i := range times {
		t0 := time.Now()
		s, err := start(o.plugin, logger)
		if err != nil {
			return nil, err
		}
		err = call(s.echo, payload, true)
		times[i] = time.Since(t0)
		s.client.Kill()
		if err != nil {
			return nil, err
		}
	}
	sortDurations(times)
	return map[string]float64{
		"cold_start_ms": percentileUs(times, 50) / 1e3,
	}, nil
}

func run(args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	// go-plugin's own logs and the plugin's stderr, warnings and up.
	logger := hclog.New(&hclog.LoggerOptions{
		Name:   "bench-goplugin-host",
		Level:  hclog.Warn,
		Output: os.Stderr,
	})
	payload := make([]byte, o.payload)
	for i := range payload {
		payload[i] = byte(i)
	}
	var result map[string]float64
	switch o.mode {
	case "latency":
		result, err = latency(o, payload, logger)
	case "throughput":
		result, err = throughput(o, payload, logger)
	case "coldstart":
		result, err = coldStart(o, payload, logger)
	default:
		err = errors.New("unreachable: mode checked by parseFlags")
	}
	if err != nil {
		return err
	}
	out, err := json.Marshal(result)
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "bench-goplugin-host: %v\n", err)
		os.Exit(1)
	}
}
