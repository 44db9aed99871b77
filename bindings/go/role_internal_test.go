// SPDX-License-Identifier: Apache-2.0

// role_internal_test.go: certRole follows the rules of util/role.h (the
// cases of tests/role_test.c that Go can build).

package taskgrid

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

func roleCert(t *testing.T, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(1)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func uris(t *testing.T, ss ...string) []*url.URL {
	var out []*url.URL
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// rawSAN is a subjectAltName extension with these (tag, value) names.
func rawSAN(t *testing.T, names ...asn1.RawValue) pkix.Extension {
	var inner []byte
	for _, n := range names {
		b, err := asn1.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		inner = append(inner, b...)
	}
	seq, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: inner})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Value: seq}
}

func gn(tag int, v string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, Bytes: []byte(v)}
}

func TestCertRole(t *testing.T) {
	oidCN := asn1.ObjectIdentifier{2, 5, 4, 3}
	multi, err := asn1.Marshal(pkix.RDNSequence{{{Type: oidCN, Value: "x"}, {Type: oidOU, Value: "worker"}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		tmpl *x509.Certificate
		role string
		why  string
	}{
		{"URI", &x509.Certificate{URIs: uris(t, "taskgrid:role=worker")}, "worker", ""},
		{"URI wins over OU", &x509.Certificate{URIs: uris(t, "taskgrid:role=worker"),
			Subject: pkix.Name{OrganizationalUnit: []string{"client"}}}, "worker", ""},
		{"OU", &x509.Certificate{Subject: pkix.Name{CommonName: "w", OrganizationalUnit: []string{"client"}}}, "client", ""},
		{"two role URIs", &x509.Certificate{URIs: uris(t, "taskgrid:role=worker", "taskgrid:role=admin")}, "", "ambiguous"},
		{"a bad role URI does not fall back", &x509.Certificate{URIs: uris(t, "taskgrid:role=Worker"),
			Subject: pkix.Name{OrganizationalUnit: []string{"worker"}}}, "", "'Worker' is not a role name"},
		{"a long role", &x509.Certificate{URIs: uris(t, "taskgrid:role="+strings.Repeat("a", 33))}, "", "is not a role name"},
		{"two OUs", &x509.Certificate{Subject: pkix.Name{OrganizationalUnit: []string{"worker", "client"}}}, "", "several OU"},
		{"role text in the CN", &x509.Certificate{Subject: pkix.Name{CommonName: "x,OU=worker"}}, "", "neither"},
		{"role text in a DNS SAN", &x509.Certificate{ExtraExtensions: []pkix.Extension{
			rawSAN(t, gn(2, "taskgrid:role=worker"))}}, "", "neither"},
		{"a role URI is read raw, not URL-decoded", &x509.Certificate{ExtraExtensions: []pkix.Extension{
			rawSAN(t, gn(6, "taskgrid:role=wor%6Ber"))}}, "", "'wor%6Ber' is not a role name"},
		{"an OU in a multi-valued RDN", &x509.Certificate{RawSubject: multi}, "worker", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			role, why := certRole(roleCert(t, tt.tmpl))
			if role != tt.role || !strings.Contains(why, tt.why) || (tt.role == "") != (why != "") {
				t.Errorf("certRole = %q, %q; want %q, a reason with %q", role, why, tt.role, tt.why)
			}
		})
	}
}

func TestCodeName(t *testing.T) {
	for c, want := range map[codes.Code]string{codes.Unavailable: "UNAVAILABLE", codes.NotFound: "NOT_FOUND",
		codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.Canceled: "CANCELLED", codes.OK: "OK"} {
		if got := codeName(c); got != want {
			t.Errorf("codeName(%v) = %q, want %q", c, got, want)
		}
	}
}
