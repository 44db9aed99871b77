// SPDX-License-Identifier: Apache-2.0

// tls_test.go: mutual TLS between the Go client, a Go worker, a C worker
// and a C scheduler, with certificates made here (a cluster CA, and one
// certificate per role, the role as URI SAN "taskgrid:role=NAME" and as
// the OU, as taskgrid-certs makes them).

package taskgrid_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

// testPKI is a cluster CA and the files of certificates it signed.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "taskgrid test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key, serial: 1}
	writePEM(t, filepath.Join(p.dir, "ca.pem"), "CERTIFICATE", der)
	return p
}

// issue writes NAME.pem and NAME-key.pem for a role, valid from notBefore
// to notAfter, and returns their paths.
func (p *testPKI) issue(t *testing.T, name, role string, notBefore, notAfter time.Time) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	u, _ := url.Parse("taskgrid:role=" + role)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      pkix.Name{CommonName: name, OrganizationalUnit: []string{role}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost", "taskgrid-worker"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		URIs:         []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(t, cert, "CERTIFICATE", der)
	writePEM(t, key, "EC PRIVATE KEY", kder)
	return cert, key
}

func (p *testPKI) security(t *testing.T, name, role string) *taskgrid.Security {
	cert, key := p.issue(t, name, role, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	return &taskgrid.Security{CAFile: filepath.Join(p.dir, "ca.pem"), CertFile: cert, KeyFile: key}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestMutualTLSAcrossLanguages(t *testing.T) {
	pki := newPKI(t)
	schedCert, schedKey := pki.issue(t, "scheduler", "scheduler", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	ca := filepath.Join(pki.dir, "ca.pem")
	addr := tgtest.Scheduler(t, "--launcher", "none", "--listen", "tls://127.0.0.1:0",
		"--tls-ca", ca, "--tls-cert", schedCert, "--tls-key", schedKey)
	if !strings.HasPrefix(addr, "tls://") {
		t.Fatalf("the scheduler listens on %s, want tls://", addr)
	}
	wCert, wKey := pki.issue(t, "c-worker", "worker", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	tgtest.CWorker(t, addr, "--name", "c", "--nthreads", "1", "--tls-ca", ca, "--tls-cert", wCert, "--tls-key", wKey)
	goWorker(t, addr, map[string]taskgrid.Func{"go.double": double},
		taskgrid.WithName("go"), taskgrid.WithSecurity(pki.security(t, "go-worker", "worker")))
	c := dial(t, addr, taskgrid.WithSecurity(pki.security(t, "client", "client")))
	waitForWorkers(t, c, 2)

	ctx := testContext(t)
	fs, err := c.SubmitMany(ctx, []taskgrid.Task{
		{Key: "c-inc", Func: "tg.inc", Input: []byte("20"), Codec: "json"},
		{Key: "go-double", Func: "go.double", Deps: []string{"c-inc"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := fs[1].Result(ctx); err != nil || string(got) != "42" {
		t.Fatalf("over mutual TLS: %q, %v", got, err)
	}

	t.Run("a client without a certificate is refused", func(t *testing.T) {
		_, err := taskgrid.Dial(testContext(t), addr, taskgrid.WithSecurity(&taskgrid.Security{CAFile: ca}))
		if err == nil || !strings.Contains(err.Error(), "TLS handshake failed") || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Dial without a client certificate = %v, want an immediate TLS handshake failure", err)
		}
	})
	t.Run("a certificate of another CA is refused", func(t *testing.T) {
		other := newPKI(t).security(t, "stranger", "client")
		other.CAFile = ca // trusts the scheduler, but is not trusted by it
		_, err := taskgrid.Dial(testContext(t), addr, taskgrid.WithSecurity(other))
		if err == nil || !strings.Contains(err.Error(), "TLS handshake failed") || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Dial with a certificate of another CA = %v, want an immediate TLS handshake failure", err)
		}
	})
}

func TestExpiredCertificateIsNamedBeforeConnecting(t *testing.T) {
	pki := newPKI(t)
	cert, key := pki.issue(t, "old", "client", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	sec := &taskgrid.Security{CAFile: filepath.Join(pki.dir, "ca.pem"), CertFile: cert, KeyFile: key}
	_, err := taskgrid.Dial(testContext(t), "tls://127.0.0.1:1", taskgrid.WithSecurity(sec))
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), cert) {
		t.Fatalf("Dial = %v, want an error naming the expired certificate", err)
	}
}
