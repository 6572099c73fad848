// Command flowctl is Flow's command-line client; see internal/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/flowrt/flow/internal/cli"
	_ "github.com/flowrt/flow/pkg/builtin" // the built-in operator types
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Env{})
	stop()
	os.Exit(code)
}
