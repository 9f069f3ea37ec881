package vcard

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"log/slog"

	"kiosk/firmware/emrtd/apdu"
	"kiosk/firmware/emrtd/bac"
	"kiosk/firmware/emrtd/cardimage"
	"kiosk/firmware/emrtd/lds"
	"kiosk/firmware/emrtd/pa"
	"kiosk/firmware/emrtd/pace"
	"kiosk/provisioning/issuer"
)

// now is the issuing and verification time of the test documents.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	testCAN = "123456"
	testPIN = "654321"
	testDoc = "L898902C3"
)

var testKey = bac.Key{DocumentNumber: testDoc, DateOfBirth: "740812", DateOfExpiry: "340415"}

// transport adapts a Card to apdu.Transport, as the simulated reader does.
type transport struct{ c *Card }

func (t transport) Transmit(ctx context.Context, capdu []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return t.c.Process(append([]byte(nil), capdu...)), nil
}

// noiseJPEG returns a synthetic JPEG of at least minSize bytes: noise
// compresses badly, so the size is easy to steer. It needs no real face.
func noiseJPEG(tb testing.TB, minSize int) []byte {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	for side := 32; ; side += 16 {
		img := image.NewRGBA(image.Rect(0, 0, side, side*4/3))
		b := img.Bounds()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				img.Set(x, y, color.RGBA{uint8(rng.IntN(256)), uint8(x), uint8(y), 255})
			}
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 80}); err != nil {
			tb.Fatal(err)
		}
		if buf.Len() >= minSize {
			return buf.Bytes()
		}
	}
}

var (
	smallPhotoOnce sync.Once
	smallPhoto     []byte
)

func smallJPEG(tb testing.TB) []byte {
	smallPhotoOnce.Do(func() { smallPhoto = noiseJPEG(tb, 2000) })
	return smallPhoto
}

func issuerOptions(photo []byte) issuer.Options {
	return issuer.Options{DocNumber: testDoc, Surname: "Eriksson", Given: "Anna Maria", Nationality: "UTO",
		Sex: "F", Birth: testKey.DateOfBirth, Expiry: testKey.DateOfExpiry, CAN: testCAN, PIN: testPIN,
		Photo: photo, Now: now}
}

// issue creates a document; mod adjusts the issuer options.
func issue(tb testing.TB, photo []byte, mod func(*issuer.Options)) (*cardimage.Image, *issuer.Trust) {
	tb.Helper()
	o := issuerOptions(photo)
	if mod != nil {
		mod(&o)
	}
	im, trust, err := issuer.Issue(o)
	if err != nil {
		tb.Fatalf("issue: %v", err)
	}
	return im, trust
}

func newCard(tb testing.TB, im *cardimage.Image, opts Options) *Card {
	tb.Helper()
	c, err := New(im, opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return c
}

func channel(c *Card, extended bool) *apdu.Channel {
	return apdu.NewChannel(transport{c}, apdu.Options{Extended: extended})
}

// paceInfo reads EF.CardAccess in plain, as a terminal does first.
func paceInfo(tb testing.TB, ch *apdu.Channel) pace.PACEInfo {
	tb.Helper()
	ctx := context.Background()
	raw, err := ch.ReadFile(ctx, lds.FIDCardAccess)
	if err != nil {
		tb.Fatalf("read EF.CardAccess: %v", err)
	}
	infos, err := pace.ParseCardAccess(raw)
	if err != nil {
		tb.Fatalf("parse EF.CardAccess: %v", err)
	}
	info, _, err := infos.Select()
	if err != nil {
		tb.Fatalf("select PACEInfo: %v", err)
	}
	return info
}

// establishPACE runs PACE and installs the session on ch.
func establishPACE(tb testing.TB, ch *apdu.Channel, pw pace.Password) *pace.Result {
	tb.Helper()
	res, err := pace.Establish(context.Background(), ch, pw, paceInfo(tb, ch), pace.Options{})
	if err != nil {
		tb.Fatalf("PACE %s: %v", pw.Type, err)
	}
	ch.SetWrapper(res.Session)
	return res
}

// readDocument selects the application and reads EF.COM, DG1, DG2 and
// EF.SOD, then runs passive authentication.
func readDocument(tb testing.TB, ch *apdu.Channel, trust *issuer.Trust) (map[int][]byte, *pa.Result) {
	tb.Helper()
	ctx := context.Background()
	if err := ch.SelectApplication(ctx, []byte(lds.AIDeMRTD)); err != nil {
		tb.Fatalf("select application: %v", err)
	}
	com, err := ch.ReadFile(ctx, lds.FIDCOM)
	if err != nil {
		tb.Fatalf("read EF.COM: %v", err)
	}
	c, err := lds.ParseCOM(com)
	if err != nil {
		tb.Fatalf("parse EF.COM: %v", err)
	}
	dgs := map[int][]byte{}
	for _, n := range c.DataGroups() {
		f, ok := lds.DGFile(n)
		if !ok {
			tb.Fatalf("DG%d has no file", n)
		}
		if dgs[n], err = ch.ReadFile(ctx, f.FID); err != nil {
			tb.Fatalf("read DG%d: %v", n, err)
		}
	}
	sod, err := ch.ReadFile(ctx, lds.FIDSOD)
	if err != nil {
		tb.Fatalf("read EF.SOD: %v", err)
	}
	return dgs, pa.Verify(sod, dgs, trust.Store(), now)
}

// do sends one raw C-APDU and splits the answer.
func do(tb testing.TB, c *Card, capdu ...byte) apdu.Response {
	tb.Helper()
	r, err := apdu.ParseResponse(c.Process(capdu))
	if err != nil {
		tb.Fatalf("% X: %v", capdu, err)
	}
	return r
}

// logSink records log records for assertions.
type logSink struct {
	mu   sync.Mutex
	recs []string
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Level.String()+" "+r.Message)
	return nil
}
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logSink) WithGroup(string) slog.Handler      { return l }

func (l *logSink) has(substr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if strings.Contains(r, substr) {
			return true
		}
	}
	return false
}
