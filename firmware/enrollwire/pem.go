package enrollwire

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
)

// ParseCertificates parses every CERTIFICATE block of a PEM text (chains,
// roots and CA certificates travel so in enrollment answers and bundles);
// other blocks are skipped, and at least one certificate is required.
func ParseCertificates(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}
