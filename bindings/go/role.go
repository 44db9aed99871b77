// SPDX-License-Identifier: Apache-2.0

// role.go: the taskgrid role a certificate carries, by the rules of the C
// daemons (util/role.h), so that the data service of a Go worker admits
// exactly the certificates a C worker admits:
//
//  1. The role is read from X.509 structure only: a URI subject
//     alternative name "taskgrid:role=NAME", else the subject's OU
//     attribute. Role-looking text elsewhere (CN, DNS names, ...) is
//     ignored.
//  2. The URI SAN wins over the OU.
//  3. Ambiguity gives no role: two or more role URIs, or (without a role
//     URI) two or more OUs, or a value that is not 1 to 32 of [a-z0-9_-]
//     (a bad role URI does not fall back to the OU).
//  4. An OU inside a multi-valued RDN counts.
//
// Depends on crypto/x509 and encoding/asn1 only.

package taskgrid

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"strings"
)

const (
	roleURIPrefix = "taskgrid:role="
	roleMax       = 32
	// roleWorker is the role DataService.Fetch requires over TLS.
	roleWorker = "worker"
	// roleClient may fetch too from a worker started with WithDataClients.
	roleClient = "client"
	// workerTLSName is the DNS name every worker certificate carries
	// (TG_PROTO_WORKER_TLS_NAME): clients fetching directly verify it.
	workerTLSName = "taskgrid-worker"
)

var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidOU             = asn1.ObjectIdentifier{2, 5, 4, 11}
)

// certRole returns the certificate's role, or "" and why it has none.
func certRole(c *x509.Certificate) (role, why string) {
	uris, why := roleURIs(c)
	if why != "" {
		return "", why
	}
	switch len(uris) {
	case 0:
	case 1:
		return takeRole(uris[0][len(roleURIPrefix):], "the URI SAN "+roleURIPrefix+"NAME value")
	default:
		return "", fmt.Sprintf("%d URI SANs %s...: refused as ambiguous", len(uris), roleURIPrefix)
	}
	var ous []string
	for _, atv := range c.Subject.Names {
		if !atv.Type.Equal(oidOU) {
			continue
		}
		s, ok := atv.Value.(string)
		if !ok {
			return "", "an OU that is not a string"
		}
		ous = append(ous, s)
	}
	switch len(ous) {
	case 0:
		return "", "neither a URI SAN " + roleURIPrefix + "NAME nor an OU"
	case 1:
		return takeRole([]byte(ous[0]), "the OU")
	default:
		return "", "several OU attributes and no URI SAN " + roleURIPrefix + "NAME: refused as ambiguous"
	}
}

// roleURIs returns the raw URI SANs that start with the role prefix
// (compared byte for byte, as the C rule does, not after URL parsing).
func roleURIs(c *x509.Certificate) (uris [][]byte, why string) {
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		rest, err := asn1.Unmarshal(ext.Value, &seq)
		if err != nil || len(rest) > 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence {
			return nil, "an unparsable subjectAltName extension"
		}
		for in := seq.Bytes; len(in) > 0; {
			var gn asn1.RawValue
			if in, err = asn1.Unmarshal(in, &gn); err != nil {
				return nil, "an unparsable subjectAltName extension"
			}
			// GeneralName uniformResourceIdentifier: [6] IA5String.
			if gn.Class == asn1.ClassContextSpecific && gn.Tag == 6 && bytes.HasPrefix(gn.Bytes, []byte(roleURIPrefix)) {
				uris = append(uris, gn.Bytes)
			}
		}
	}
	return uris, ""
}

// takeRole accepts v if it is a role name (1 to 32 of a-z, 0-9, _ and -).
func takeRole(v []byte, what string) (string, string) {
	ok := len(v) > 0 && len(v) <= roleMax
	for _, ch := range v {
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-') {
			ok = false
		}
	}
	if !ok {
		return "", fmt.Sprintf("%s '%s' is not a role name (1 to 32 of a-z, 0-9, _ and -)", what, quoteRole(v))
	}
	return string(v), ""
}

// quoteRole renders v for a message: printable ASCII as is, other bytes
// (and \ and ') as \xNN, at most 48 input bytes, so that a hostile value
// cannot forge log lines.
func quoteRole(v []byte) string {
	var b strings.Builder
	for i, ch := range v {
		if i == 48 {
			b.WriteString("...")
			break
		}
		if ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '\'' {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "\\x%02x", ch)
		}
	}
	return b.String()
}
