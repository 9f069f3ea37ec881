package apdu

import (
	"context"
	"fmt"

	"kiosk/firmware/emrtd/tlv"
)

// SelectMF selects the master file (ISO/IEC 7816-4 §7.1.1, P1=00 with
// file id 3F00; 9303-10 §3.10: EF.CardAccess lives there).
func (c *Channel) SelectMF(ctx context.Context) error {
	_, err := c.Do(ctx, Command{CLA: 0x00, INS: 0xA4, P1: 0x00, P2: 0x0C, Data: []byte{0x3F, 0x00}})
	if err != nil {
		return fmt.Errorf("select MF: %w", err)
	}
	return nil
}

// SelectApplication selects a DF by name (P1=04, no FCI), e.g. the LDS1
// eMRTD application A0 00 00 02 47 10 01 (9303-10 §3.10).
func (c *Channel) SelectApplication(ctx context.Context, aid []byte) error {
	_, err := c.Do(ctx, Command{CLA: 0x00, INS: 0xA4, P1: 0x04, P2: 0x0C, Data: aid})
	if err != nil {
		return fmt.Errorf("select application %X: %w", aid, err)
	}
	return nil
}

// SelectEF selects an elementary file under the current DF by its file
// identifier (P1=02, no FCI; 9303-10 §3.10).
func (c *Channel) SelectEF(ctx context.Context, fid uint16) error {
	_, err := c.Do(ctx, Command{CLA: 0x00, INS: 0xA4, P1: 0x02, P2: 0x0C, Data: []byte{byte(fid >> 8), byte(fid)}})
	if err != nil {
		return fmt.Errorf("select EF %04X: %w", fid, err)
	}
	return nil
}

// ReadBinary reads up to ne bytes of the current EF at offset. Offsets up
// to 32767 use READ BINARY 'B0' with the offset in P1-P2; larger ones use
// 'B1' with the offset in DO'54' and the data in DO'53' (ISO/IEC 7816-4
// §11.3.3). End of file (6282) with data is not an error.
func (c *Channel) ReadBinary(ctx context.Context, offset, ne int) ([]byte, error) {
	if offset < 0 || ne <= 0 || ne > MaxExtendedNe {
		return nil, fmt.Errorf("read binary: bad offset %d or length %d", offset, ne)
	}
	var cmd Command
	if offset <= 0x7FFF {
		cmd = Command{CLA: 0x00, INS: 0xB0, P1: byte(offset >> 8), P2: byte(offset), Ne: ne}
	} else {
		off := []byte{byte(offset >> 16), byte(offset >> 8), byte(offset)}
		if offset > 0xFFFFFF {
			off = []byte{byte(offset >> 24), byte(offset >> 16), byte(offset >> 8), byte(offset)}
		}
		// Ne covers exactly the DO'53' header for ne data bytes (tag and
		// length octets): a card may fill Ne, and more would exceed ne.
		cmd = Command{CLA: 0x00, INS: 0xB1, Data: tlv.Encode(0x54, off), Ne: min(ne+1+len(tlv.EncodeLength(ne)), MaxExtendedNe)}
		if !c.opts.Extended && cmd.Ne > MaxShortNe {
			cmd.Ne = MaxShortNe
		}
	}
	resp, err := c.Transmit(ctx, cmd)
	if err != nil {
		return nil, fmt.Errorf("read binary at %d: %w", offset, err)
	}
	if resp.SW != SWOK && !(resp.SW == SWEndOfFile && len(resp.Data) > 0) {
		return nil, fmt.Errorf("read binary at %d: %w", offset, &StatusError{SW: resp.SW})
	}
	data := resp.Data
	if cmd.INS == 0xB1 {
		if data, err = tlv.Unwrap(resp.Data, 0x53); err != nil {
			return nil, fmt.Errorf("read binary at %d: DO'53': %w", offset, err)
		}
	}
	if len(data) > ne {
		return nil, fmt.Errorf("read binary at %d: %w: %d bytes for %d", offset, ErrTooMuchData, len(data), ne)
	}
	return data, nil
}

// ReadFile selects the EF fid and reads it whole: first the 4 bytes that
// hold the TLV tag and length of every LDS file (9303-10 §4.6), then the
// rest in chunks of Options.ChunkSize.
func (c *Channel) ReadFile(ctx context.Context, fid uint16) ([]byte, error) {
	if err := c.SelectEF(ctx, fid); err != nil {
		return nil, err
	}
	b, err := c.ReadSelected(ctx)
	if err != nil {
		return nil, fmt.Errorf("read EF %04X: %w", fid, err)
	}
	return b, nil
}

// ReadSelected reads the currently selected EF as ReadFile does.
func (c *Channel) ReadSelected(ctx context.Context) ([]byte, error) {
	buf, err := c.ReadBinary(ctx, 0, 4)
	if err != nil {
		return nil, err
	}
	total := 0
	for {
		n, more, err := tlvSize(buf)
		if err != nil {
			return nil, err
		}
		if !more {
			total = n
			break
		}
		if len(buf) >= 10 { // 4 tag bytes + 5 length bytes at most
			return nil, fmt.Errorf("%w: header longer than %d bytes", ErrBadFileHeader, len(buf))
		}
		extra, err := c.ReadBinary(ctx, len(buf), 10-len(buf))
		if err != nil {
			return nil, err
		}
		if len(extra) == 0 {
			return nil, fmt.Errorf("%w: in the TLV header", ErrShortRead)
		}
		buf = append(buf, extra...)
	}
	if total > c.opts.MaxFileSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFileTooLarge, total, c.opts.MaxFileSize)
	}
	if len(buf) > total {
		buf = buf[:total]
	}
	out := make([]byte, len(buf), total)
	copy(out, buf)
	for len(out) < total {
		n := min(c.opts.ChunkSize, total-len(out))
		if len(out) > 0x7FFF && n > ShortChunk-4 && !c.opts.Extended {
			// READ BINARY B1 wraps the data in DO'53' (up to 4 header
			// bytes): shrink the chunk so the protected response still
			// fits 256 bytes (with AES, 0xDF+4 bytes pad to 240).
			n = ShortChunk - 4
		}
		part, err := c.ReadBinary(ctx, len(out), n)
		if err != nil {
			return nil, err
		}
		if len(part) == 0 {
			return nil, fmt.Errorf("%w: at %d of %d", ErrShortRead, len(out), total)
		}
		out = append(out, part...)
	}
	return out, nil
}

// tlvSize returns the total size of the TLV object b starts with, or more
// = true if b ends inside its header.
func tlvSize(b []byte) (total int, more bool, err error) {
	if len(b) == 0 {
		return 0, true, nil
	}
	i := 1
	if b[0]&0x1F == 0x1F {
		for {
			if i >= len(b) {
				return 0, true, nil
			}
			if i >= 4 {
				return 0, false, fmt.Errorf("%w: tag longer than 4 bytes", ErrBadFileHeader)
			}
			i++
			if b[i-1]&0x80 == 0 {
				break
			}
		}
	}
	if i >= len(b) {
		return 0, true, nil
	}
	l := int(b[i])
	i++
	switch {
	case l == 0x80 || l > 0x84:
		return 0, false, fmt.Errorf("%w: length byte %02X", ErrBadFileHeader, l)
	case l > 0x80:
		n := l & 0x7F
		if len(b) < i+n {
			return 0, true, nil
		}
		l = 0
		for _, c := range b[i : i+n] {
			l = l<<8 | int(c)
		}
		i += n
		if l < 0 || l > 1<<30 {
			return 0, false, fmt.Errorf("%w: length %d", ErrBadFileHeader, l)
		}
	}
	return i + l, false, nil
}
