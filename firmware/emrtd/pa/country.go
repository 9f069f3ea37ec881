package pa

import (
	"fmt"
	"strings"
)

// Country binding (9303-12 §7.1.1: the countryName of a document
// signer's subject is that of its issuer, the CSCA; 9303-3 §5: DG1's
// issuing state is the three-letter code of the state that issued the
// document, and that state's CSCA signs for it).
//
// Certificates carry ISO 3166-1 alpha-2 codes, the MRZ alpha-3 codes
// with the exceptions 9303-3 §5 lists; countryCodes maps each MRZ code
// to the certificate countries allowed for it.

// iso3166 is ISO 3166-1 alpha-3 → alpha-2.
var iso3166 = map[string]string{
	"AFG": "AF", "ALA": "AX", "ALB": "AL", "DZA": "DZ", "ASM": "AS", "AND": "AD", "AGO": "AO", "AIA": "AI",
	"ATA": "AQ", "ATG": "AG", "ARG": "AR", "ARM": "AM", "ABW": "AW", "AUS": "AU", "AUT": "AT", "AZE": "AZ",
	"BHS": "BS", "BHR": "BH", "BGD": "BD", "BRB": "BB", "BLR": "BY", "BEL": "BE", "BLZ": "BZ", "BEN": "BJ",
	"BMU": "BM", "BTN": "BT", "BOL": "BO", "BES": "BQ", "BIH": "BA", "BWA": "BW", "BVT": "BV", "BRA": "BR",
	"IOT": "IO", "BRN": "BN", "BGR": "BG", "BFA": "BF", "BDI": "BI", "CPV": "CV", "KHM": "KH", "CMR": "CM",
	"CAN": "CA", "CYM": "KY", "CAF": "CF", "TCD": "TD", "CHL": "CL", "CHN": "CN", "CXR": "CX", "CCK": "CC",
	"COL": "CO", "COM": "KM", "COG": "CG", "COD": "CD", "COK": "CK", "CRI": "CR", "CIV": "CI", "HRV": "HR",
	"CUB": "CU", "CUW": "CW", "CYP": "CY", "CZE": "CZ", "DNK": "DK", "DJI": "DJ", "DMA": "DM", "DOM": "DO",
	"ECU": "EC", "EGY": "EG", "SLV": "SV", "GNQ": "GQ", "ERI": "ER", "EST": "EE", "SWZ": "SZ", "ETH": "ET",
	"FLK": "FK", "FRO": "FO", "FJI": "FJ", "FIN": "FI", "FRA": "FR", "GUF": "GF", "PYF": "PF", "ATF": "TF",
	"GAB": "GA", "GMB": "GM", "GEO": "GE", "DEU": "DE", "GHA": "GH", "GIB": "GI", "GRC": "GR", "GRL": "GL",
	"GRD": "GD", "GLP": "GP", "GUM": "GU", "GTM": "GT", "GGY": "GG", "GIN": "GN", "GNB": "GW", "GUY": "GY",
	"HTI": "HT", "HMD": "HM", "VAT": "VA", "HND": "HN", "HKG": "HK", "HUN": "HU", "ISL": "IS", "IND": "IN",
	"IDN": "ID", "IRN": "IR", "IRQ": "IQ", "IRL": "IE", "IMN": "IM", "ISR": "IL", "ITA": "IT", "JAM": "JM",
	"JPN": "JP", "JEY": "JE", "JOR": "JO", "KAZ": "KZ", "KEN": "KE", "KIR": "KI", "PRK": "KP", "KOR": "KR",
	"KWT": "KW", "KGZ": "KG", "LAO": "LA", "LVA": "LV", "LBN": "LB", "LSO": "LS", "LBR": "LR", "LBY": "LY",
	"LIE": "LI", "LTU": "LT", "LUX": "LU", "MAC": "MO", "MDG": "MG", "MWI": "MW", "MYS": "MY", "MDV": "MV",
	"MLI": "ML", "MLT": "MT", "MHL": "MH", "MTQ": "MQ", "MRT": "MR", "MUS": "MU", "MYT": "YT", "MEX": "MX",
	"FSM": "FM", "MDA": "MD", "MCO": "MC", "MNG": "MN", "MNE": "ME", "MSR": "MS", "MAR": "MA", "MOZ": "MZ",
	"MMR": "MM", "NAM": "NA", "NRU": "NR", "NPL": "NP", "NLD": "NL", "NCL": "NC", "NZL": "NZ", "NIC": "NI",
	"NER": "NE", "NGA": "NG", "NIU": "NU", "NFK": "NF", "MKD": "MK", "MNP": "MP", "NOR": "NO", "OMN": "OM",
	"PAK": "PK", "PLW": "PW", "PSE": "PS", "PAN": "PA", "PNG": "PG", "PRY": "PY", "PER": "PE", "PHL": "PH",
	"PCN": "PN", "POL": "PL", "PRT": "PT", "PRI": "PR", "QAT": "QA", "REU": "RE", "ROU": "RO", "RUS": "RU",
	"RWA": "RW", "BLM": "BL", "SHN": "SH", "KNA": "KN", "LCA": "LC", "MAF": "MF", "SPM": "PM", "VCT": "VC",
	"WSM": "WS", "SMR": "SM", "STP": "ST", "SAU": "SA", "SEN": "SN", "SRB": "RS", "SYC": "SC", "SLE": "SL",
	"SGP": "SG", "SXM": "SX", "SVK": "SK", "SVN": "SI", "SLB": "SB", "SOM": "SO", "ZAF": "ZA", "SGS": "GS",
	"SSD": "SS", "ESP": "ES", "LKA": "LK", "SDN": "SD", "SUR": "SR", "SJM": "SJ", "SWE": "SE", "CHE": "CH",
	"SYR": "SY", "TWN": "TW", "TJK": "TJ", "TZA": "TZ", "THA": "TH", "TLS": "TL", "TGO": "TG", "TKL": "TK",
	"TON": "TO", "TTO": "TT", "TUN": "TN", "TUR": "TR", "TKM": "TM", "TCA": "TC", "TUV": "TV", "UGA": "UG",
	"UKR": "UA", "ARE": "AE", "GBR": "GB", "USA": "US", "UMI": "UM", "URY": "UY", "UZB": "UZ", "VUT": "VU",
	"VEN": "VE", "VNM": "VN", "VGB": "VG", "VIR": "VI", "WLF": "WF", "ESH": "EH", "YEM": "YE", "ZMB": "ZM",
	"ZWE": "ZW",
}

// icaoCodes are the MRZ codes of 9303-3 §5 that are not ISO 3166-1
// alpha-3 (or whose documents are signed under another country), with
// the certificate countries found for them. Codes not listed here and
// not in iso3166 (e.g. XOM, XPO, XCC: organisations without a CSCA
// country code this terminal knows) fail the binding: see organisations.
var icaoCodes = map[string][]string{
	"D":   {"DE"},       // Germany's one-letter MRZ code
	"GBD": {"GB"},       // British Overseas Territories citizen
	"GBN": {"GB"},       // British National (Overseas)
	"GBO": {"GB"},       // British Overseas citizen
	"GBP": {"GB"},       // British protected person
	"GBS": {"GB"},       // British subject
	"EUE": {"EU"},       // European Union laissez-passer
	"UNO": {"UN"},       // United Nations organisation
	"UNA": {"UN"},       // United Nations specialised agency
	"UNK": {"UN"},       // resident of Kosovo, document issued by UNMIK
	"RKS": {"XK"},       // Republic of Kosovo (user-assigned XK in certificates)
	"HKG": {"HK", "CN"}, // Hong Kong SAR: signed under China's PKI
	"MAC": {"MO", "CN"}, // Macao SAR: signed under China's PKI
	// Utopia, the specimen state of 9303's examples; only test
	// issuers (kioskctl eid issue) use it, with certificates C=UT.
	"UTO": {"UT"},
}

// organisations are the other issuing organisations of 9303-3 §5. They
// issue travel documents, but no certificate countryName is published for
// them that this terminal could bind to, and none of them may borrow a
// state's: their documents fail country binding (fail closed) with a
// reason naming the organisation. Binding one means adding it to icaoCodes
// with the countryName of the CSCA it publishes (ICAO PKD, master lists),
// never a guess.
var organisations = map[string]string{
	"XBA": "African Development Bank",
	"XIM": "African Export-Import Bank",
	"XCC": "Caribbean Community (CARICOM)",
	"XCE": "Council of Europe",
	"XCO": "Common Market for Eastern and Southern Africa (COMESA)",
	"XEC": "Economic Community of West African States (ECOWAS)",
	"XES": "Organisation of Eastern Caribbean States (OECS)",
	"XDC": "Southern African Development Community (SADC)",
	"XOM": "Sovereign Military Order of Malta",
	"XPO": "International Criminal Police Organization (INTERPOL)",
}

// nationalityOnly are the 9303-3 §5 codes for the holder's nationality
// (stateless persons, refugees, unspecified): a state issues such a
// document under its own code, so as an issuing state they are wrong.
var nationalityOnly = map[string]string{
	"XXA": "stateless person",
	"XXB": "refugee (1951 Convention)",
	"XXC": "refugee (other)",
	"XXX": "unspecified nationality",
}

// unboundReason says why an issuing state has no certificate country.
func unboundReason(state string) string {
	if name, ok := organisations[state]; ok {
		return fmt.Sprintf("is the organisation code of the %s, whose CSCA country this terminal does not know: not bound (fail closed)", name)
	}
	if what, ok := nationalityOnly[state]; ok {
		return fmt.Sprintf("is a nationality code (%s), never an issuing state", what)
	}
	return "is not a 9303-3 state or organisation code"
}

// CertificateCountries returns the certificate countryName codes
// (alpha-2) allowed for an MRZ issuing state, or nil when none is known.
func CertificateCountries(issuingState string) []string {
	s := strings.ToUpper(strings.TrimRight(strings.TrimSpace(issuingState), "<"))
	if c, ok := icaoCodes[s]; ok {
		return c
	}
	if c, ok := iso3166[s]; ok {
		return []string{c}
	}
	return nil
}

// CertificateCountry is the first of CertificateCountries: the code a
// test issuer puts into its certificates for an issuing state.
func CertificateCountry(issuingState string) (string, bool) {
	c := CertificateCountries(issuingState)
	if len(c) == 0 {
		return "", false
	}
	return c[0], true
}
