package lds

import (
	"fmt"

	"kiosk/firmware/emrtd/tlv"
)

// Tags of DG11 and DG12 (9303-10 §4.7.11, §4.7.12).
const (
	TagDG11 tlv.Tag = 0x6B
	TagDG12 tlv.Tag = 0x6C

	tagTagList             tlv.Tag = 0x5C
	tagFullName            tlv.Tag = 0x5F0E
	tagPersonalNumber      tlv.Tag = 0x5F10
	tagFullDateOfBirth     tlv.Tag = 0x5F2B
	tagPlaceOfBirth        tlv.Tag = 0x5F11
	tagAddress             tlv.Tag = 0x5F42
	tagTelephone           tlv.Tag = 0x5F12
	tagProfession          tlv.Tag = 0x5F13
	tagTitle               tlv.Tag = 0x5F14
	tagPersonalSummary     tlv.Tag = 0x5F15
	tagOtherTDNumbers      tlv.Tag = 0x5F17
	tagCustodyInformation  tlv.Tag = 0x5F18
	tagIssuingAuthority    tlv.Tag = 0x5F19
	tagDateOfIssue         tlv.Tag = 0x5F26
	tagEndorsements        tlv.Tag = 0x5F1B
	tagTaxExitRequirements tlv.Tag = 0x5F1C
	tagPersonalizationTime tlv.Tag = 0x5F55
	tagPersonalizationSN   tlv.Tag = 0x5F56
)

// DG11 is "additional personal details" (9303-10 §4.7.11). Text fields
// are as stored (name components separated by "<<"); dates YYYYMMDD.
// Images and nested templates (other names, proof of citizenship) are
// not kept.
type DG11 struct {
	FullName           string `json:"full_name,omitempty"`
	PersonalNumber     string `json:"personal_number,omitempty"`
	FullDateOfBirth    string `json:"full_date_of_birth,omitempty"`
	PlaceOfBirth       string `json:"place_of_birth,omitempty"`
	Address            string `json:"address,omitempty"`
	Telephone          string `json:"telephone,omitempty"`
	Profession         string `json:"profession,omitempty"`
	Title              string `json:"title,omitempty"`
	PersonalSummary    string `json:"personal_summary,omitempty"`
	OtherTDNumbers     string `json:"other_td_numbers,omitempty"`
	CustodyInformation string `json:"custody_information,omitempty"`
}

// DG12 is "additional document details" (9303-10 §4.7.12).
type DG12 struct {
	IssuingAuthority    string `json:"issuing_authority,omitempty"`
	DateOfIssue         string `json:"date_of_issue,omitempty"` // YYYYMMDD
	Endorsements        string `json:"endorsements,omitempty"`
	TaxExitRequirements string `json:"tax_exit_requirements,omitempty"`
	PersonalizationTime string `json:"personalization_time,omitempty"` // YYYYMMDDhhmmss
	PersonalizationSN   string `json:"personalization_serial,omitempty"`
}

// MaxTextField bounds one DG11/DG12 text field.
const MaxTextField = 4096

type textField struct {
	tag tlv.Tag
	dst *string
}

func (d *DG11) fields() []textField {
	return []textField{{tagFullName, &d.FullName}, {tagPersonalNumber, &d.PersonalNumber},
		{tagFullDateOfBirth, &d.FullDateOfBirth}, {tagPlaceOfBirth, &d.PlaceOfBirth}, {tagAddress, &d.Address},
		{tagTelephone, &d.Telephone}, {tagProfession, &d.Profession}, {tagTitle, &d.Title},
		{tagPersonalSummary, &d.PersonalSummary}, {tagOtherTDNumbers, &d.OtherTDNumbers},
		{tagCustodyInformation, &d.CustodyInformation}}
}

func (d *DG12) fields() []textField {
	return []textField{{tagIssuingAuthority, &d.IssuingAuthority}, {tagDateOfIssue, &d.DateOfIssue},
		{tagEndorsements, &d.Endorsements}, {tagTaxExitRequirements, &d.TaxExitRequirements},
		{tagPersonalizationTime, &d.PersonalizationTime}, {tagPersonalizationSN, &d.PersonalizationSN}}
}

// parseDetails reads a DG11/DG12 template: the tag list '5C' first, then
// the fields it lists, in any order; unknown or non-text elements are
// skipped, a field the tag list does not name is an error.
func parseDetails(b []byte, dgTag tlv.Tag, name string, fields []textField) error {
	v, err := tlv.Unwrap(b, dgTag)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, name, err)
	}
	objs, err := tlv.ParseAll(v)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, name, err)
	}
	if len(objs) == 0 || objs[0].Tag != tagTagList {
		return fmt.Errorf("%w: %s: no tag list 5C", ErrMalformed, name)
	}
	listed := map[tlv.Tag]bool{}
	for l := objs[0].Value; len(l) > 0; {
		t, n, err := readTag(l)
		if err != nil {
			return fmt.Errorf("%w: %s: tag list: %w", ErrMalformed, name, err)
		}
		listed[t] = true
		l = l[n:]
	}
	for _, o := range objs[1:] {
		for _, f := range fields {
			if o.Tag != f.tag {
				continue
			}
			if !listed[o.Tag] {
				return fmt.Errorf("%w: %s: field %s not in the tag list", ErrMalformed, name, o.Tag)
			}
			if len(o.Value) > MaxTextField {
				return fmt.Errorf("%w: %s: field %s of %d bytes", ErrMalformed, name, o.Tag, len(o.Value))
			}
			*f.dst = string(o.Value)
		}
	}
	return nil
}

// readTag reads one BER tag (1-3 bytes) of a tag list.
func readTag(b []byte) (tlv.Tag, int, error) {
	if len(b) == 0 {
		return 0, 0, fmt.Errorf("empty")
	}
	t := tlv.Tag(b[0])
	n := 1
	if b[0]&0x1F == 0x1F {
		for {
			if n >= len(b) || n > 3 {
				return 0, 0, fmt.Errorf("truncated tag")
			}
			t = t<<8 | tlv.Tag(b[n])
			n++
			if b[n-1]&0x80 == 0 {
				break
			}
		}
	}
	return t, n, nil
}

func encodeDetails(dgTag tlv.Tag, fields []textField) []byte {
	var list, body [][]byte
	for _, f := range fields {
		if *f.dst == "" {
			continue
		}
		list = append(list, tlv.EncodeTag(f.tag))
		body = append(body, tlv.Encode(f.tag, []byte(*f.dst)))
	}
	return tlv.Encode(dgTag, tlv.Concat(append([][]byte{tlv.Encode(tagTagList, tlv.Concat(list...))}, body...)...))
}

// ParseDG11 parses DG11 (tag 6B).
func ParseDG11(b []byte) (*DG11, error) {
	d := &DG11{}
	if err := parseDetails(b, TagDG11, "DG11", d.fields()); err != nil {
		return nil, err
	}
	return d, nil
}

// EncodeDG11 encodes d as DG11 (the non-empty fields).
func EncodeDG11(d *DG11) []byte { c := *d; return encodeDetails(TagDG11, c.fields()) }

// ParseDG12 parses DG12 (tag 6C).
func ParseDG12(b []byte) (*DG12, error) {
	d := &DG12{}
	if err := parseDetails(b, TagDG12, "DG12", d.fields()); err != nil {
		return nil, err
	}
	return d, nil
}

// EncodeDG12 encodes d as DG12 (the non-empty fields).
func EncodeDG12(d *DG12) []byte { c := *d; return encodeDetails(TagDG12, c.fields()) }
