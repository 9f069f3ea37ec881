package smcrypto

import (
	"crypto/cipher"
	"crypto/subtle"
)

// CMAC computes the full-length CMAC of msg with the block cipher b
// (NIST SP 800-38B §6.2; RFC 4493 for AES-128). It supports 64- and 128-bit
// block ciphers (SP 800-38B §5.3 constants Rb = 0x1B and 0x87).
func CMAC(b cipher.Block, msg []byte) []byte {
	bs := b.BlockSize()
	k1, k2 := cmacSubkeys(b)
	n := (len(msg) + bs - 1) / bs
	complete := n > 0 && len(msg)%bs == 0
	if n == 0 {
		n = 1
	}
	last := make([]byte, bs)
	if complete {
		subtle.XORBytes(last, msg[(n-1)*bs:], k1)
	} else {
		copy(last, msg[(n-1)*bs:])
		last[len(msg)-(n-1)*bs] = 0x80
		subtle.XORBytes(last, last, k2)
	}
	x := make([]byte, bs)
	for i := 0; i < n-1; i++ {
		subtle.XORBytes(x, x, msg[i*bs:(i+1)*bs])
		b.Encrypt(x, x)
	}
	subtle.XORBytes(x, x, last)
	b.Encrypt(x, x)
	return x
}

// cmacSubkeys implements SP 800-38B §6.1.
func cmacSubkeys(b cipher.Block) (k1, k2 []byte) {
	bs := b.BlockSize()
	rb := byte(0x87)
	if bs == 8 {
		rb = 0x1B
	}
	l := make([]byte, bs)
	b.Encrypt(l, l)
	k1 = dbl(l, rb)
	k2 = dbl(k1, rb)
	return k1, k2
}

func dbl(in []byte, rb byte) []byte {
	out := make([]byte, len(in))
	var carry byte
	for i := len(in) - 1; i >= 0; i-- {
		out[i] = in[i]<<1 | carry
		carry = in[i] >> 7
	}
	if carry != 0 {
		out[len(out)-1] ^= rb
	}
	return out
}
