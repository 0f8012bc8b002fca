// A broken plugin for tests: fails before its handshake with exit code 3.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "[ERROR] cannot open /nonexistent/config.yaml")
	fmt.Fprintln(os.Stderr, "[ERROR] go plugin giving up")
	os.Exit(3)
}
