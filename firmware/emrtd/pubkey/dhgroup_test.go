package pubkey

import (
	"crypto/rand"
	"math/big"
	"testing"
)

// testDHGroup generates a 1024-bit group with a 160-bit prime subgroup
// (p = k·q + 1), as RFC 5114 group 1 is shaped.
func testDHGroup(t testing.TB) DHParams {
	q, err := rand.Prime(rand.Reader, 160)
	if err != nil {
		t.Fatal(err)
	}
	one := big.NewInt(1)
	for {
		k, _ := rand.Int(rand.Reader, new(big.Int).Lsh(one, 864))
		k.SetBit(k, 863, 1).SetBit(k, 0, 0)
		p := new(big.Int).Add(new(big.Int).Mul(k, q), one)
		if p.BitLen() != 1024 || !p.ProbablyPrime(20) {
			continue
		}
		g := new(big.Int).Exp(big.NewInt(2), k, p)
		if g.Cmp(one) != 0 {
			return DHParams{P: p, G: g, Q: q}
		}
	}
}
