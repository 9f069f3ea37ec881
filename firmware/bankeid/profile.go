// Package bankeid is the terminal side of the bank eID card: a PIN-protected
// eID application on an ordinary bank card that proves possession and
// knowledge by signing a transaction challenge with a key certified by the
// eID authority. It carries no face: the bank holds the enrolled face.
//
// The national applet's specification is not public, so the kiosk speaks an
// open profile of its own, KIOSK-EID-1, built only from ISO/IEC 7816-4
// (SELECT, VERIFY, READ BINARY) and ISO/IEC 7816-8 (MSE:SET DST, PSO:
// COMPUTE DIGITAL SIGNATURE). Another profile replaces this file's
// constants and the APDUs of terminal.go; the checks (verify.go) stay.
//
//	SELECT  00 A4 04 0C 0A F0 4B 49 4F 53 4B 45 49 44 01      7816-4 §11.2.2, by DF name
//	VERIFY  00 20 00 81 (no data)                           retry counter: 63Cx, 6983 blocked
//	VERIFY  00 20 00 81 08 <ISO 9564-1 format 2 PIN block>  7816-4 §11.5.6
//	SELECT  00 A4 02 0C 02 C0 01; READ BINARY 00 B0 ..      the eID certificate (X.509 DER)
//	MSE:SET 00 22 41 B6 06 80 01 <alg> 84 01 01             7816-4 §11.5.11, DST
//	PSO:CDS 00 2A 9E 9A 20 <32-byte digest> 00              7816-8 §11.2: signature r||s (64 bytes)
//
// Algorithms (alg in MSE:SET DST): 01 = SM2 (GB/T 32918.2) over the digest
// e = SM3(Z_A || M), Z_A with the default user id 1234567812345678
// (GB/T 35276); 02 = ECDSA P-256 (FIPS 186-4) over SM3(M), for deployments
// outside China. M is the encoded Challenge (challenge.go).
package bankeid

// Profile is the name of the card profile this package implements.
const Profile = "KIOSK-EID-1"

// AID is the eID application's DF name: 'F0' is ISO/IEC 7816-5's
// proprietary, unregistered category, then "KIOSKEID" and version 01.
var AID = []byte{0xF0, 0x4B, 0x49, 0x4F, 0x53, 0x4B, 0x45, 0x49, 0x44, 0x01}

// File identifiers, instructions and references of the profile.
const (
	FIDCertificate uint16 = 0xC001 // the holder's eID certificate, X.509 DER

	InsSelect     = 0xA4
	InsVerify     = 0x20
	InsReadBinary = 0xB0
	InsMSE        = 0x22
	InsPSO        = 0x2A

	PINReference = 0x81 // VERIFY P2: specific (application) PIN, 7816-4 Table 65
	KeyReference = 0x01 // DO'84' in MSE:SET DST: the eID signing key

	// MSE:SET P1-P2: set, for computation (DST), 7816-4 §11.5.11.
	MSESetP1 = 0x41
	MSEDST   = 0xB6
	// PSO:CDS P1-P2: response is a digital signature, data is the digest.
	PSOCDSP1 = 0x9E
	PSOCDSP2 = 0x9A

	AlgSM2   = 0x01
	AlgECDSA = 0x02

	DigestSize    = 32 // SM3
	SignatureSize = 64 // r||s, 32 bytes each (SM2 and P-256)

	MinPINLength = 4
	MaxPINLength = 12
	// MaxCertificateSize bounds the certificate EF.
	MaxCertificateSize = 4096
)

// Status words of the profile beyond the common ones of package apdu.
const (
	SWPINBlocked uint16 = 0x6983 // authentication method blocked
)
