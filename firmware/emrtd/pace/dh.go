package pace

import (
	"fmt"
	"io"
	"math/big"

	"kiosk/firmware/emrtd/pubkey"
	"kiosk/firmware/emrtd/tlv"
)

// dhGroup implements group for the RFC 5114 MODP groups of the
// standardized domain parameters (9303-11 §9.5.1, ids 0–2): a prime p,
// a generator g of a subgroup of prime order q. Generic Mapping for DH
// (§4.4.3.3.1): g' = g^s · h with h = peer^priv mod p. Public keys travel
// as unsigned integers of the length of p (§9.4.2; DO'84' in the
// authentication token input, §4.4.3.5.1).
//
// math/big is not constant time; the exponents are ephemeral per PACE
// run, so timing leaks one run's keys at most.
type dhGroup struct {
	p, q, g *big.Int
	byteLen int
}

func newDHGroup(p, g, q string) *dhGroup {
	pp, _ := new(big.Int).SetString(p, 16)
	gg, _ := new(big.Int).SetString(g, 16)
	qq, _ := new(big.Int).SetString(q, 16)
	return &dhGroup{p: pp, g: gg, q: qq, byteLen: (pp.BitLen() + 7) / 8}
}

func (d *dhGroup) encode(y *big.Int) []byte { return y.FillBytes(make([]byte, d.byteLen)) }

// decode accepts 1 < y < p−1 with y^q = 1 (mod p): an element of the
// prime order subgroup (small-subgroup attacks, NIST SP 800-56A §5.6.2.3).
func (d *dhGroup) decode(b []byte) (*big.Int, error) {
	if len(b) == 0 || len(b) > d.byteLen {
		return nil, fmt.Errorf("%w: DH public key of %d bytes", ErrInvalidPublicKey, len(b))
	}
	y := new(big.Int).SetBytes(b)
	pm1 := new(big.Int).Sub(d.p, big.NewInt(1))
	if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(pm1) >= 0 {
		return nil, fmt.Errorf("%w: DH public key out of range", ErrInvalidPublicKey)
	}
	if new(big.Int).Exp(y, d.q, d.p).Cmp(big.NewInt(1)) != 0 {
		return nil, fmt.Errorf("%w: DH public key not in the prime order subgroup", ErrInvalidPublicKey)
	}
	return y, nil
}

func (d *dhGroup) checkPublic(pub []byte) error {
	_, err := d.decode(pub)
	return err
}

func (d *dhGroup) publicKey(priv, gen []byte) ([]byte, error) {
	base := d.g
	if gen != nil {
		var err error
		if base, err = d.decode(gen); err != nil {
			return nil, err
		}
	}
	y := new(big.Int).Exp(base, new(big.Int).SetBytes(priv), d.p)
	if y.Cmp(big.NewInt(1)) == 0 {
		return nil, fmt.Errorf("pace: DH public key is 1")
	}
	return d.encode(y), nil
}

func (d *dhGroup) generateKey(rnd io.Reader, gen []byte) (priv, pub []byte, err error) {
	// A private key in [1, q−1], as many bytes as q.
	if priv, err = pubkey.Scalar(rnd, d.q); err != nil {
		return nil, nil, err
	}
	if pub, err = d.publicKey(priv, gen); err != nil {
		return nil, nil, err
	}
	return priv, pub, nil
}

// mapGenerator: g' = g^s · h mod p, h = peer^priv (9303-11 §4.4.3.3.1).
func (d *dhGroup) mapGenerator(s, priv, peer []byte) ([]byte, error) {
	y, err := d.decode(peer)
	if err != nil {
		return nil, err
	}
	h := new(big.Int).Exp(y, new(big.Int).SetBytes(priv), d.p)
	if h.Cmp(big.NewInt(1)) == 0 {
		return nil, fmt.Errorf("%w: mapping value h is 1", ErrInvalidPublicKey)
	}
	gs := new(big.Int).Exp(d.g, new(big.Int).SetBytes(s), d.p)
	g2 := gs.Mul(gs, h)
	g2.Mod(g2, d.p)
	if g2.Cmp(big.NewInt(1)) == 0 {
		return nil, fmt.Errorf("%w: mapped generator is 1", ErrInvalidPublicKey)
	}
	return d.encode(g2), nil
}

// sharedSecret is K = peer^priv mod p as an octet string of the length
// of p (9303-11 §4.4.3.4; I2OS as for the public keys).
func (d *dhGroup) sharedSecret(priv, peer []byte) ([]byte, error) {
	y, err := d.decode(peer)
	if err != nil {
		return nil, err
	}
	k := new(big.Int).Exp(y, new(big.Int).SetBytes(priv), d.p)
	if k.Cmp(big.NewInt(1)) == 0 {
		return nil, fmt.Errorf("%w: shared secret is 1", ErrInvalidPublicKey)
	}
	return d.encode(k), nil
}

func (d *dhGroup) publicKeyDO(pub []byte) []byte { return tlv.Encode(0x84, pub) }

// RFC 5114 §2.1–§2.3 groups (9303-11 §9.5.1 ids 0, 1, 2).
const (
	rfc5114P1024 = "B10B8F96A080E01DDE92DE5EAE5D54EC52C99FBCFB06A3C69A6A9DCA52D23B616073E28675A23D189838EF1E2EE652C0" +
		"13ECB4AEA906112324975C3CD49B83BFACCBDD7D90C4BD7098488E9C219A73724EFFD6FAE5644738FAA31A4FF55BCCC0" +
		"A151AF5F0DC8B4BD45BF37DF365C1A65E68CFDA76D4DA708DF1FB2BC2E4A4371"
	rfc5114G1024 = "A4D1CBD5C3FD34126765A442EFB99905F8104DD258AC507FD6406CFF14266D31266FEA1E5C41564B777E690F5504F213" +
		"160217B4B01B886A5E91547F9E2749F4D7FBD7D3B9A92EE1909D0D2263F80A76A6A24C087A091F531DBF0A0169B6A28A" +
		"D662A4D18E73AFA32D779D5918D08BC8858F4DCEF97C2A24855E6EEB22B3B2E5"
	rfc5114Q160 = "F518AA8781A8DF278ABA4E7D64B7CB9D49462353"

	rfc5114P2048a = "AD107E1E9123A9D0D660FAA79559C51FA20D64E5683B9FD1B54B1597B61D0A75E6FA141DF95A56DBAF9A3C407BA1DF15" +
		"EB3D688A309C180E1DE6B85A1274A0A66D3F8152AD6AC2129037C9EDEFDA4DF8D91E8FEF55B7394B7AD5B7D0B6C12207" +
		"C9F98D11ED34DBF6C6BA0B2C8BBC27BE6A00E0A0B9C49708B3BF8A317091883681286130BC8985DB1602E714415D9330" +
		"278273C7DE31EFDC7310F7121FD5A07415987D9ADC0A486DCDF93ACC44328387315D75E198C641A480CD86A1B9E587E8" +
		"BE60E69CC928B2B9C52172E413042E9B23F10B0E16E79763C9B53DCF4BA80A29E3FB73C16B8E75B97EF363E2FFA31F71" +
		"CF9DE5384E71B81C0AC4DFFE0C10E64F"
	rfc5114G2048a = "AC4032EF4F2D9AE39DF30B5C8FFDAC506CDEBE7B89998CAF74866A08CFE4FFE3A6824A4E10B9A6F0DD921F01A70C4AFA" +
		"AB739D7700C29F52C57DB17C620A8652BE5E9001A8D66AD7C17669101999024AF4D027275AC1348BB8A762D0521BC98A" +
		"E247150422EA1ED409939D54DA7460CDB5F6C6B250717CBEF180EB34118E98D119529A45D6F834566E3025E316A330EF" +
		"BB77A86F0C1AB15B051AE3D428C8F8ACB70A8137150B8EEB10E183EDD19963DDD9E263E4770589EF6AA21E7F5F2FF381" +
		"B539CCE3409D13CD566AFBB48D6C019181E1BCFE94B30269EDFE72FE9B6AA4BD7B5A0F1C71CFFF4C19C418E1F6EC0179" +
		"81BC087F2A7065B384B890D3191F2BFA"
	rfc5114Q224 = "801C0D34C58D93FE997177101F80535A4738CEBCBF389A99B36371EB"

	rfc5114P2048b = "87A8E61DB4B6663CFFBBD19C651959998CEEF608660DD0F25D2CEED4435E3B00E00DF8F1D61957D4FAF7DF4561B2AA30" +
		"16C3D91134096FAA3BF4296D830E9A7C209E0C6497517ABD5A8A9D306BCF67ED91F9E6725B4758C022E0B1EF4275BF7B" +
		"6C5BFC11D45F9088B941F54EB1E59BB8BC39A0BF12307F5C4FDB70C581B23F76B63ACAE1CAA6B7902D52526735488A0E" +
		"F13C6D9A51BFA4AB3AD8347796524D8EF6A167B5A41825D967E144E5140564251CCACB83E6B486F6B3CA3F7971506026" +
		"C0B857F689962856DED4010ABD0BE621C3A3960A54E710C375F26375D7014103A4B54330C198AF126116D2276E11715F" +
		"693877FAD7EF09CADB094AE91E1A1597"
	rfc5114G2048b = "3FB32C9B73134D0B2E77506660EDBD484CA7B18F21EF205407F4793A1A0BA12510DBC15077BE463FFF4FED4AAC0BB555" +
		"BE3A6C1B0C6B47B1BC3773BF7E8C6F62901228F8C28CBB18A55AE31341000A650196F931C77A57F2DDF463E5E9EC144B" +
		"777DE62AAAB8A8628AC376D282D6ED3864E67982428EBC831D14348F6F2F9193B5045AF2767164E1DFC967C1FB3F2E55" +
		"A4BD1BFFE83B9C80D052B985D182EA0ADB2A3B7313D3FE14C8484B1E052588B9B7D2BBD2DF016199ECD06E1557CD0915" +
		"B3353BBB64E0EC377FD028370DF92B52C7891428CDC67EB6184B523D1DB246C32F63078490F00EF8D647D148D4795451" +
		"5E2327CFEF98C582664B4C0F6CC41659"
	rfc5114Q256 = "8CF83642A709A097B447997640129DA299B1A47D1EB3750BA308B0FE64F5FBD3"
)
