// A broken plugin for tests: prints a banner where the handshake belongs.
package main

import (
	"fmt"
	"time"
)

func main() {
	fmt.Println("hello from a go plugin")
	time.Sleep(time.Hour) // the host kills it
}
