package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/flowrt/flow/pkg/api"
)

// ErrUnreachable is wrapped by the error of a submit-time check when no
// broker answered.
var ErrUnreachable = errors.New("no Kafka broker answered")

// ErrNoTopic is wrapped by the error of a submit-time check when a topic
// does not exist.
var ErrNoTopic = errors.New("topic does not exist")

// checkTimeout bounds the submit-time checks (metadata, broker configs).
const checkTimeout = 5 * time.Second

// Keys of the tls and sasl config sections.
var (
	tlsKeys  = []string{"enabled", "caFile", "certFile", "keyFile", "serverName", "insecureSkipVerify"}
	saslKeys = []string{"mechanism", "username", "password"}
)

// commonFields are the connection fields of the source and the sink.
func commonFields() []api.Field {
	return []api.Field{
		{Name: "brokers", Type: api.TypeStringList, Required: true, Validate: validateBrokers,
			Doc: "Bootstrap brokers as host:port, such as [\"kafka-1:9092\", \"kafka-2:9092\"]."},
		{Name: "tls", Type: api.TypeStringMap, Validate: func(v any) error { _, err := tlsConfig(v.(map[string]string)); return err },
			Doc: "TLS to the brokers: enabled (true), caFile, certFile and keyFile (PEM files on every TaskManager), serverName, insecureSkipVerify. Absent: plaintext."},
		{Name: "sasl", Type: api.TypeStringMap, Validate: func(v any) error { _, err := saslMechanism(v.(map[string]string)); return err },
			Doc: "SASL authentication: mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), username, password. Absent: none."},
	}
}

func validateBrokers(v any) error {
	bs := v.([]string)
	if len(bs) == 0 {
		return errors.New("is empty: list at least one broker as host:port")
	}
	for _, b := range bs {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			return fmt.Errorf("broker %q is not host:port (such as localhost:9092)", b)
		}
	}
	return nil
}

func checkKeys(section string, m map[string]string, keys []string) error {
	for k := range m {
		ok := false
		for _, want := range keys {
			ok = ok || k == want
		}
		if !ok {
			return fmt.Errorf("unknown %s key %q (known: %s)", section, k, strings.Join(keys, ", "))
		}
	}
	return nil
}

// tlsConfig builds the TLS config of a tls section (nil: no TLS).
func tlsConfig(m map[string]string) (*tls.Config, error) {
	if len(m) == 0 {
		return nil, nil
	}
	if err := checkKeys("tls", m, tlsKeys); err != nil {
		return nil, err
	}
	if e, ok := m["enabled"]; ok {
		on, err := strconv.ParseBool(e)
		if err != nil {
			return nil, fmt.Errorf("enabled %q: want true or false", e)
		}
		if !on {
			return nil, nil
		}
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: m["serverName"]}
	if s, ok := m["insecureSkipVerify"]; ok {
		v, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("insecureSkipVerify %q: want true or false", s)
		}
		c.InsecureSkipVerify = v
	}
	if f := m["caFile"]; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("caFile %s holds no PEM certificate", f)
		}
		c.RootCAs = pool
	}
	if (m["certFile"] == "") != (m["keyFile"] == "") {
		return nil, errors.New("certFile and keyFile go together: give both or neither")
	}
	if m["certFile"] != "" {
		cert, err := tls.LoadX509KeyPair(m["certFile"], m["keyFile"])
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// saslMechanism builds the kgo SASL option of a sasl section (nil: none).
func saslMechanism(m map[string]string) (kgo.Opt, error) {
	if len(m) == 0 {
		return nil, nil
	}
	if err := checkKeys("sasl", m, saslKeys); err != nil {
		return nil, err
	}
	user, pass := m["username"], m["password"]
	if user == "" {
		return nil, errors.New("username is empty")
	}
	switch strings.ToUpper(m["mechanism"]) {
	case "PLAIN":
		return kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()), nil
	case "SCRAM-SHA-256":
		return kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()), nil
	case "SCRAM-SHA-512":
		return kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()), nil
	}
	return nil, fmt.Errorf("mechanism %q: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", m["mechanism"])
}

// conn is the connection part of a source's or sink's config.
type conn struct {
	brokers []string
	tls     *tls.Config
	sasl    kgo.Opt
}

func connOf(cfg api.Config) (conn, error) {
	c := conn{brokers: cfg.StringList("brokers")}
	if err := validateBrokers(c.brokers); err != nil {
		return c, fmt.Errorf("brokers: %w", err)
	}
	var err error
	if c.tls, err = tlsConfig(cfg.StringMap("tls")); err != nil {
		return c, fmt.Errorf("tls: %w", err)
	}
	if c.sasl, err = saslMechanism(cfg.StringMap("sasl")); err != nil {
		return c, fmt.Errorf("sasl: %w", err)
	}
	return c, nil
}

// opts returns the client options to reach the brokers.
func (c conn) opts(extra ...kgo.Opt) []kgo.Opt {
	// No kgo.RecordDeliveryTimeout: franz-go measures it from the record's
	// timestamp, which the sink sets to the event time, so a record of an
	// hour ago would fail at once. The sink bounds delivery with the
	// context it produces under instead (Sink.produceCtx).
	o := []kgo.Opt{kgo.SeedBrokers(c.brokers...), kgo.DialTimeout(5 * time.Second)}
	if c.tls != nil {
		o = append(o, kgo.DialTLSConfig(c.tls.Clone()))
	}
	if c.sasl != nil {
		o = append(o, c.sasl)
	}
	return append(o, extra...)
}

// admin returns a plain client and its admin wrapper.
func (c conn) admin(extra ...kgo.Opt) (*kgo.Client, *kadm.Client, error) {
	cl, err := kgo.NewClient(c.opts(extra...)...)
	if err != nil {
		return nil, nil, err
	}
	return cl, kadm.NewClient(cl), nil
}

// check asks the brokers for the metadata of topics (none: the cluster's
// metadata only) and returns a one-line error naming the brokers or the
// missing topic.
func (c conn) check(what string, topics []string) error {
	cl, adm, err := c.admin(kgo.RequestRetries(1))
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	md, err := adm.Metadata(ctx, topics...)
	if err != nil {
		return fmt.Errorf("%s: brokers %s: %w within %s (%v): check the brokers list and that Kafka runs", what, strings.Join(c.brokers, ","), ErrUnreachable, checkTimeout, err)
	}
	for _, t := range topics {
		td, ok := md.Topics[t]
		if !ok || td.Err != nil || len(td.Partitions) == 0 {
			return fmt.Errorf("%s: %w: %q on brokers %s: create it or fix the topic name", what, ErrNoTopic, t, strings.Join(c.brokers, ","))
		}
	}
	return nil
}
