package bankeid_test

import (
	"crypto/elliptic"
	"testing"

	"github.com/emmansun/gmsm/smx509"
)

func ecdsaCurve() elliptic.Curve { return elliptic.P256() }

func mustCert(t *testing.T, der []byte) any {
	t.Helper()
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c.PublicKey
}
