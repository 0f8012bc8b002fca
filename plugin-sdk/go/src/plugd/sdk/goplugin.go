package plugd

// go-plugin mode: the same plugin loaded by a HashiCorp go-plugin host
// (docs/go-plugin.md).

import (
	"context"
	"fmt"
	"io/ioutil"
	"os"
	"strconv"
	"strings"

	goplugin "goplugin"
)

// goPluginHandshake is a go-plugin application's magic cookie.
type goPluginHandshake struct{ key, value string }

// GoPlugin lets the host of the go-plugin application whose
// plugin.HandshakeConfig has this MagicCookieKey and MagicCookieValue load
// the plugin too (go-plugin mode): when PLUGD_MAGIC_COOKIE is absent and the
// variable key holds value, Serve negotiates against
// PLUGIN_PROTOCOL_VERSIONS (with no version in common it announces its
// lowest, as go-plugin's own plugins do, so that the host reports the
// mismatch), listens on PLUGD_SOCKET if set or else on a socket of its own
// in $TMPDIR, and also serves plugin.GRPCController (Shutdown: a graceful
// shutdown) and plugin.GRPCBroker (accepted, no brokered connections).
func (p *Plugin) GoPlugin(key, value string) *Plugin {
	if key == "" || strings.Contains(key, "=") || value == "" {
		p.defErrors = append(p.defErrors, fmt.Errorf(
			"GoPlugin needs the application's MagicCookieKey (without '=') and MagicCookieValue"))
		return p
	}
	p.goPlugin = &goPluginHandshake{key, value}
	return p
}

// GoPluginMode is true while Serve runs in go-plugin mode.
func (p *Plugin) GoPluginMode() bool { return p.goPluginMode }

// refusal is what a plugin run without a launcher's cookie prints.
func (p *Plugin) refusal(getenv func(string) string) string {
	if getenv("PLUGIN_PROTOCOL_VERSIONS") != "" {
		text := fmt.Sprintf("This binary is a plugin (plugd plugin %s %s), not meant to be "+
			"executed directly.\nA go-plugin host started it (PLUGIN_PROTOCOL_VERSIONS is set) ",
			p.name, p.version)
		if p.goPlugin != nil {
			return text + fmt.Sprintf("without the magic cookie it accepts:\nthe host's "+
				"plugin.HandshakeConfig must have MagicCookieKey %q and MagicCookieValue %q.\n",
				p.goPlugin.key, p.goPlugin.value)
		}
		return text + "but this plugin accepts no go-plugin magic cookie\n" +
			"(Plugin.GoPlugin was not called; see docs/go-plugin.md).\n"
	}
	text := fmt.Sprintf("This is a plugd plugin (%s %s); it is not meant to be run by hand.\n"+
		"Run it through a plugd host, e.g. `calc --plugin PATH --list`, or under the plugd broker",
		p.name, p.version)
	if p.goPlugin != nil {
		text += fmt.Sprintf(", or from a go-plugin host whose HandshakeConfig has "+
			"MagicCookieKey %q and MagicCookieValue %q", p.goPlugin.key, p.goPlugin.value)
	}
	return text + ".\n"
}

// negotiateGoPlugin: the highest version in PLUGIN_PROTOCOL_VERSIONS that we
// speak; with no list, or none in common, our lowest (go-plugin's rule).
func negotiateGoPlugin(text string, ours []uint32) (uint32, error) {
	lowest := ours[0]
	for _, v := range ours {
		if v < lowest {
			lowest = v
		}
	}
	if text == "" {
		return lowest, nil
	}
	seen := map[uint32]bool{}
	var host []uint32
	for _, part := range strings.Split(text, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(part), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("PLUGIN_PROTOCOL_VERSIONS=%q is malformed; expected e.g. 1 or 1,2", text)
		}
		if !seen[uint32(v)] {
			seen[uint32(v)] = true
			host = append(host, uint32(v))
		}
	}
	var best uint32
	for _, v := range ours {
		if seen[v] && v > best {
			best = v
		}
	}
	if best == 0 {
		Warnf("no protocol version in common: the host supports %s, the plugin supports %s; "+
			"upgrade whichever side is older; announcing version %d as go-plugin plugins do, "+
			"so that the go-plugin host reports the mismatch",
			formatVersions(host), formatVersions(ours), lowest)
		return lowest, nil
	}
	return best, nil
}

// pickSocket: a socket of our own in $TMPDIR (default /tmp), as go-plugin
// creates $TMPDIR/pluginNNN.
func pickSocket(getenv func(string) string) (string, error) {
	dir := getenv("TMPDIR")
	if dir == "" {
		dir = "/tmp"
	}
	f, err := ioutil.TempFile(dir, "plugd")
	if err != nil {
		return "", fmt.Errorf("cannot pick a socket in %s: %v (set TMPDIR to a writable directory)", dir, err)
	}
	path := f.Name()
	f.Close()
	os.Remove(path)
	if len(path) > 107 || !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("cannot pick a socket in TMPDIR=%q: Unix socket paths are absolute and "+
			"limited to 107 bytes; set TMPDIR to a shorter directory", dir)
	}
	return path, nil
}

// goPluginController serves plugin.GRPCController: a go-plugin host's
// client.Kill() calls Shutdown and gives the plugin 2 s to exit.
type goPluginController struct{ p *Plugin }

func (c goPluginController) Shutdown(ctx context.Context, _ *goplugin.Empty) (*goplugin.Empty, error) {
	Infof("shutdown requested (plugin.GRPCController/Shutdown)")
	c.p.Shutdown()
	return &goplugin.Empty{}, nil
}

// goPluginBroker serves plugin.GRPCBroker: the stream a go-plugin host opens
// on every connection is accepted and kept; what it sends is ignored (no
// brokered connections); it ends when the host closes it or when the
// shutdown begins.
type goPluginBroker struct{ p *Plugin }

func (b goPluginBroker) StartStream(stream goplugin.GRPCBroker_StartStreamServer) error {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			info, err := stream.Recv()
			if err != nil {
				return
			}
			Debugf("go-plugin broker: ignoring the host's brokered connection %d (%s %s)",
				info.GetServiceId(), info.GetNetwork(), info.GetAddress())
		}
	}()
	select {
	case <-closed:
	case <-b.p.done:
	}
	return nil
}
