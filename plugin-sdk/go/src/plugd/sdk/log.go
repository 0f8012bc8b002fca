package plugd

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/grpclog"
)

// Level is a log level, lowest first.
type Level int32

// The levels plugd launchers recognise in "[LEVEL] message" lines.
const (
	LevelDebug Level = iota
	LevelInfo
	LevelWarn
	LevelError
)

func (l Level) String() string {
	switch l {
	case LevelDebug:
		return "DEBUG"
	case LevelInfo:
		return "INFO"
	case LevelWarn:
		return "WARN"
	}
	return "ERROR"
}

// ParseLevel reads "debug", "info", "warn" (or "warning") and "error",
// in any case.
func ParseLevel(text string) (Level, bool) {
	switch strings.ToLower(strings.TrimSpace(text)) {
	case "debug", "trace":
		return LevelDebug, true
	case "info":
		return LevelInfo, true
	case "warn", "warning":
		return LevelWarn, true
	case "error":
		return LevelError, true
	}
	return LevelInfo, false
}

var (
	minLevel = int32(levelFromEnv())
	logMu    sync.Mutex // one line at a time
)

func levelFromEnv() Level {
	level, _ := ParseLevel(os.Getenv("PLUGD_LOG_LEVEL"))
	return level
}

// SetLogLevel sets the lowest level that is written; the default comes from
// PLUGD_LOG_LEVEL (info when unset or unknown).
func SetLogLevel(l Level) { atomic.StoreInt32(&minLevel, int32(l)) }

// Logf writes one "[LEVEL] message" line to stderr when level is at least
// the minimum. Newlines in the message become " | ", so a message stays one
// line (one log record for the launcher). Safe from any goroutine.
func Logf(level Level, format string, args ...interface{}) {
	if int32(level) < atomic.LoadInt32(&minLevel) {
		return
	}
	text := fmt.Sprintf(format, args...)
	text = strings.ReplaceAll(strings.TrimRight(text, "\n"), "\n", " | ")
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Fprintf(os.Stderr, "[%s] %s\n", level, text)
}

// Debugf logs at debug level.
func Debugf(format string, args ...interface{}) { Logf(LevelDebug, format, args...) }

// Infof logs at info level.
func Infof(format string, args ...interface{}) { Logf(LevelInfo, format, args...) }

// Warnf logs at warn level.
func Warnf(format string, args ...interface{}) { Logf(LevelWarn, format, args...) }

// Errorf logs at error level.
func Errorf(format string, args ...interface{}) { Logf(LevelError, format, args...) }

// grpcLogger routes grpc-go's own warnings and errors into "[LEVEL] grpc: "
// lines; its info chatter is dropped.
type grpcLogger struct{}

func (grpcLogger) Info(args ...interface{})                 {}
func (grpcLogger) Infoln(args ...interface{})               {}
func (grpcLogger) Infof(format string, args ...interface{}) {}
func (grpcLogger) Warning(args ...interface{})              { Warnf("grpc: %s", fmt.Sprint(args...)) }
func (grpcLogger) Warningln(args ...interface{})            { Warnf("grpc: %s", fmt.Sprint(args...)) }
func (grpcLogger) Warningf(format string, args ...interface{}) {
	Warnf("grpc: "+format, args...)
}
func (grpcLogger) Error(args ...interface{})   { Errorf("grpc: %s", fmt.Sprint(args...)) }
func (grpcLogger) Errorln(args ...interface{}) { Errorf("grpc: %s", fmt.Sprint(args...)) }
func (grpcLogger) Errorf(format string, args ...interface{}) {
	Errorf("grpc: "+format, args...)
}
func (grpcLogger) Fatal(args ...interface{}) {
	Errorf("grpc: %s", fmt.Sprint(args...))
	os.Exit(1)
}
func (grpcLogger) Fatalln(args ...interface{}) {
	Errorf("grpc: %s", fmt.Sprint(args...))
	os.Exit(1)
}
func (grpcLogger) Fatalf(format string, args ...interface{}) {
	Errorf("grpc: "+format, args...)
	os.Exit(1)
}
func (grpcLogger) V(l int) bool { return false }

var grpcLogOnce sync.Once

// routeGrpcLogs installs grpcLogger, once; grpclog allows it only before
// any gRPC activity, which Serve guarantees.
func routeGrpcLogs() {
	grpcLogOnce.Do(func() { grpclog.SetLoggerV2(grpcLogger{}) })
}
