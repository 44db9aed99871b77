// SPDX-License-Identifier: Apache-2.0

// security.go: scheduler addresses ("tcp://", "tls://") and the Security
// options (cluster CA, this side's certificate and key) that turn a tls://
// address into gRPC transport credentials for mutual TLS. Depends on
// crypto/tls and grpc's credentials packages.

package taskgrid

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Security is the TLS material for a "tls://" scheduler address: the CA
// that signs the cluster's certificates, and this side's certificate chain
// and private key (mutual TLS: the scheduler refuses peers without a
// certificate signed by its CA). It is the Go twin of the C SDK's
// tg_security and the Python client's security= argument.
//
// Give each item either as a PEM file name (read when the connection is
// made) or as PEM bytes. The CA is required; certificate and key go
// together.
type Security struct {
	CAFile   string // CA certificate(s) that sign the cluster
	CertFile string // this side's certificate chain
	KeyFile  string // this side's private key

	CA   []byte // CA as PEM, instead of CAFile
	Cert []byte // certificate as PEM, instead of CertFile
	Key  []byte // private key as PEM, instead of KeyFile

	// ServerName is checked against the scheduler's certificate. Empty:
	// the host of the address.
	ServerName string
}

// parseAddress splits "tcp://host:port", "tls://host:port" or "host:port"
// into a gRPC target "host:port" and whether TLS is asked for.
func parseAddress(address string) (target string, useTLS bool, err error) {
	rest := address
	switch {
	case strings.HasPrefix(address, "tcp://"):
		rest = strings.TrimPrefix(address, "tcp://")
	case strings.HasPrefix(address, "tls://"):
		rest, useTLS = strings.TrimPrefix(address, "tls://"), true
	case strings.Contains(address, "://"):
		return "", false, fmt.Errorf("taskgrid: address %q: scheme must be tcp:// or tls://", address)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil || port == "" {
		return "", false, fmt.Errorf("taskgrid: address %q is not tcp://HOST:PORT or tls://HOST:PORT", address)
	}
	if host == "" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port), useTLS, nil
}

// transportCredentials chooses plaintext or TLS for an address.
func transportCredentials(address string, sec *Security) (string, credentials.TransportCredentials, error) {
	target, useTLS, err := parseAddress(address)
	if err != nil {
		return "", nil, err
	}
	if !useTLS {
		if sec != nil {
			return "", nil, fmt.Errorf("taskgrid: security options given for the plaintext address %q; use tls://", address)
		}
		return target, insecure.NewCredentials(), nil
	}
	if sec == nil {
		return "", nil, fmt.Errorf("taskgrid: address %q needs security options (WithSecurity)", address)
	}
	host, _, _ := net.SplitHostPort(target)
	cfg, err := sec.tlsConfig(host)
	if err != nil {
		return "", nil, err
	}
	return target, credentials.NewTLS(cfg), nil
}

// tlsConfig builds a client-side mutual TLS configuration. Files and
// certificates are checked here, so that a missing file, a non-PEM file or
// an expired certificate is named clearly instead of surfacing later as
// "connection closed".
func (s *Security) tlsConfig(host string) (*tls.Config, error) {
	pool, pair, err := s.material()
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		RootCAs:    pool,
		ServerName: s.ServerName,
		MinVersion: tls.VersionTLS12,
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if pair != nil {
		cfg.Certificates = []tls.Certificate{*pair}
	}
	// Without a pair: server-authenticated TLS only; a scheduler that
	// requires client certificates refuses it.
	return cfg, nil
}

// material loads and checks the CA pool and, when given, this side's
// certificate and key (nil when neither is given).
func (s *Security) material() (*x509.CertPool, *tls.Certificate, error) {
	caPEM, err := pemItem("CA", s.CA, s.CAFile)
	if err != nil {
		return nil, nil, err
	}
	if caPEM == nil {
		return nil, nil, errors.New("taskgrid: security: the cluster CA is required (CAFile or CA)")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("taskgrid: security: no PEM certificate in the CA %s", origin(s.CAFile))
	}
	certPEM, err := pemItem("certificate", s.Cert, s.CertFile)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := pemItem("key", s.Key, s.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case certPEM == nil && keyPEM == nil:
		return pool, nil, nil
	case certPEM == nil || keyPEM == nil:
		return nil, nil, errors.New("taskgrid: security: certificate and key go together (give both or neither)")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("taskgrid: security: certificate %s / key %s: %w", origin(s.CertFile), origin(s.KeyFile), err)
	}
	if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil {
		now := time.Now()
		if now.After(leaf.NotAfter) {
			return nil, nil, fmt.Errorf("taskgrid: security: certificate %s expired on %s", origin(s.CertFile), leaf.NotAfter.Format(time.RFC3339))
		}
		if now.Before(leaf.NotBefore) {
			return nil, nil, fmt.Errorf("taskgrid: security: certificate %s is not valid before %s", origin(s.CertFile), leaf.NotBefore.Format(time.RFC3339))
		}
	}
	return pool, &pair, nil
}

// pemItem returns inline PEM bytes or a file's contents (nil when neither).
func pemItem(what string, inline []byte, file string) ([]byte, error) {
	if inline != nil && file != "" {
		return nil, fmt.Errorf("taskgrid: security: give the %s as a file or as PEM, not both", what)
	}
	if inline != nil {
		if b, _ := pem.Decode(inline); b == nil {
			return nil, fmt.Errorf("taskgrid: security: the %s is not PEM", what)
		}
		return inline, nil
	}
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("taskgrid: security: cannot read the %s: %w", what, err)
	}
	if p, _ := pem.Decode(b); p == nil {
		return nil, fmt.Errorf("taskgrid: security: the %s file %s is not PEM", what, file)
	}
	return b, nil
}

func origin(file string) string {
	if file == "" {
		return "(PEM bytes)"
	}
	return file
}
