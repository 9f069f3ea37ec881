package lds

import (
	"kiosk/firmware/emrtd/tlv"
)

// COM is EF.COM (9303-10 §4.6.1): the LDS and Unicode versions and the tags
// of the data groups present. Readers must not trust it for security
// decisions (EF.SOD is what is signed) but use it to know what to read.
type COM struct {
	LDSVersion     string    // 5F01, "aabb": LDS version aa.bb, e.g. "0107"
	UnicodeVersion string    // 5F36, "aabbcc", e.g. "040000"
	Tags           []tlv.Tag // 5C, data group tags in the order listed
}

// DataGroups maps Tags to DG numbers, skipping tags that name no DG.
func (c *COM) DataGroups() []int {
	var out []int
	for _, t := range c.Tags {
		if n := DGForTag(t); n != 0 {
			out = append(out, n)
		}
	}
	return out
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ParseCOM parses EF.COM (the whole file, tag 60).
func ParseCOM(b []byte) (*COM, error) {
	v, err := tlv.Unwrap(b, TagCOM)
	if err != nil {
		return nil, malformed("EF.COM: %v", err)
	}
	objs, err := tlv.ParseAll(v)
	if err != nil {
		return nil, malformed("EF.COM: %v", err)
	}
	c := &COM{}
	lv, ok := tlv.Find(objs, 0x5F01)
	if !ok || len(lv.Value) != 4 || !digits(string(lv.Value)) {
		return nil, malformed("EF.COM: LDS version (5F01) missing or not 4 digits")
	}
	c.LDSVersion = string(lv.Value)
	uv, ok := tlv.Find(objs, 0x5F36)
	if !ok || len(uv.Value) != 6 || !digits(string(uv.Value)) {
		return nil, malformed("EF.COM: Unicode version (5F36) missing or not 6 digits")
	}
	c.UnicodeVersion = string(uv.Value)
	tl, ok := tlv.Find(objs, 0x5C)
	if !ok {
		return nil, malformed("EF.COM: tag list (5C) missing")
	}
	// The tag list holds one-byte tags (all LDS1 DG tags are one byte).
	c.Tags = make([]tlv.Tag, 0, len(tl.Value))
	for _, t := range tl.Value {
		c.Tags = append(c.Tags, tlv.Tag(t))
	}
	return c, nil
}

// EncodeCOM builds EF.COM.
func EncodeCOM(c *COM) ([]byte, error) {
	if len(c.LDSVersion) != 4 || !digits(c.LDSVersion) {
		return nil, malformed("EF.COM: LDS version %q is not 4 digits", c.LDSVersion)
	}
	if len(c.UnicodeVersion) != 6 || !digits(c.UnicodeVersion) {
		return nil, malformed("EF.COM: Unicode version %q is not 6 digits", c.UnicodeVersion)
	}
	list := make([]byte, 0, len(c.Tags))
	for _, t := range c.Tags {
		if t > 0xFF {
			return nil, malformed("EF.COM: tag %s does not fit the one-byte tag list", t)
		}
		list = append(list, byte(t))
	}
	return tlv.Encode(TagCOM, tlv.Concat(
		tlv.Encode(0x5F01, []byte(c.LDSVersion)),
		tlv.Encode(0x5F36, []byte(c.UnicodeVersion)),
		tlv.Encode(0x5C, list),
	)), nil
}
