// Command kfakebroker runs franz-go's in-process Kafka broker (kfake) as a
// process of its own, so that tests talk Kafka protocol over TCP between
// real processes (Flow's TaskManagers, kcat, the test itself).
//
//	kfakebroker -listen 127.0.0.1:0 -topic in:4 -topic out:4 -addr-file /tmp/addr
//
// It listens on one loopback address (port 0 picks a free port), creates
// the -topic name:partitions topics, prints "listening <host:port>" on
// stdout once it serves and writes the address to -addr-file (written to a
// temporary name, then renamed, so a reader never sees half of it). It
// stops on SIGINT or SIGTERM. The broker keeps everything in memory: a
// killed broker loses its data. -txn-max-timeout sets the broker's
// transaction.max.timeout.ms (kfake defaults to 15 minutes, as Kafka).
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

type topics []string

func (t *topics) String() string     { return strings.Join(*t, ",") }
func (t *topics) Set(v string) error { *t = append(*t, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kfakebroker:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		listen   = flag.String("listen", "127.0.0.1:0", "loopback host:port to serve Kafka on (port 0: any free port)")
		addrFile = flag.String("addr-file", "", "file to write the chosen host:port to")
		txnMax   = flag.Duration("txn-max-timeout", 0, "transaction.max.timeout.ms of the broker (0: kfake's default, 15m)")
		ts       topics
	)
	flag.Var(&ts, "topic", "topic to create, as name:partitions (repeatable)")
	flag.Parse()

	host, port, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", *listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-listen %q: only loopback addresses are served (127.0.0.1, [::1], localhost)", *listen)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("-listen %q: bad port", *listen)
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.ListenFn(func(network, _ string) (net.Listener, error) {
		return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(p)))
	})}
	seeded := map[int32][]string{}
	for _, t := range ts {
		name, n, ok := strings.Cut(t, ":")
		parts, err := strconv.Atoi(n)
		if !ok || name == "" || err != nil || parts < 1 {
			return fmt.Errorf("-topic %q: want name:partitions such as events:4", t)
		}
		seeded[int32(parts)] = append(seeded[int32(parts)], name)
	}
	for parts, names := range seeded {
		opts = append(opts, kfake.SeedTopics(parts, names...))
	}
	if *txnMax > 0 {
		opts = append(opts, kfake.BrokerConfigs(map[string]string{"transaction.max.timeout.ms": strconv.FormatInt(txnMax.Milliseconds(), 10)}))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	defer c.Close()
	addrs := c.ListenAddrs()
	if len(addrs) != 1 {
		return errors.New("broker listens on no address")
	}
	if *addrFile != "" {
		tmp := filepath.Join(filepath.Dir(*addrFile), "."+filepath.Base(*addrFile)+".tmp")
		if err := os.WriteFile(tmp, []byte(addrs[0]+"\n"), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			return err
		}
	}
	fmt.Printf("listening %s\n", addrs[0])
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	return nil
}
