package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// TestSASL: the sasl section authenticates with PLAIN and SCRAM; a wrong
// password fails the submit-time check.
func TestSASL(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in"), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "alice", "secret"), kfake.Superuser("SCRAM-SHA-512", "bob", "hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := c.ListenAddrs()[0]
	cl := newClient(t, addr, kgo.SASL(plain.Auth{User: "alice", Pass: "secret"}.AsMechanism()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "in", Value: []byte(`{"n":0}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, auth := range []map[string]any{
		{"mechanism": "PLAIN", "username": "alice", "password": "secret"},
		{"mechanism": "SCRAM-SHA-512", "username": "bob", "password": "hunter2"},
	} {
		a := startSources(t, addr, 1, nil, map[string]any{"sasl": auth})
		a.run(1)
		a.close()
	}
	typ := SourceType()
	cfg, err := typ.DecodeConfig(map[string]any{"brokers": []any{addr}, "topics": []any{"in"},
		"sasl": map[string]any{"mechanism": "PLAIN", "username": "alice", "password": "wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := typ.NewSource(cfg); err == nil {
		t.Fatal("a wrong password passed the submit-time check")
	}
	if _, err := typ.DecodeConfig(map[string]any{"brokers": []any{addr}, "topics": []any{"in"},
		"sasl": map[string]any{"mechanism": "GSSAPI", "username": "x"}}); err == nil {
		t.Fatal("an unsupported mechanism was accepted")
	}
}

// TestTLS: the tls section verifies the broker with caFile; without TLS the
// check fails.
func TestTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := c.ListenAddrs()[0]
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	cl := newClient(t, addr, kgo.DialTLSConfig(&tls.Config{RootCAs: pool}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "in", Value: []byte(`{"n":0}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	a := startSources(t, addr, 1, nil, map[string]any{"tls": map[string]any{"caFile": ca}})
	a.run(1)
	a.close()
	typ := SourceType()
	cfg, err := typ.DecodeConfig(map[string]any{"brokers": []any{addr}, "topics": []any{"in"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := typ.NewSource(cfg); err == nil {
		t.Fatal("plaintext against a TLS broker passed the submit-time check")
	}
}
