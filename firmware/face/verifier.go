package face

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"
	"kiosk/drivers/camera"
	"kiosk/firmware/session"
)

// FrameSource delivers camera frames; *camera.Pump satisfies it. Next
// returns a frame with Seq > afterSeq, owned by the caller.
type FrameSource interface {
	Next(ctx context.Context, afterSeq uint64) (*camera.Frame, error)
}

// Reason codes of a FaceResult that did not end in consent.
const (
	ReasonNoReferenceFace = "no_reference_face" // the chip photo has no usable face
	ReasonNoFace          = "no_face"           // no face came into view before the timeout
	ReasonTimeout         = "timeout"           // faces came, but never a usable one in time
	ReasonMismatch        = "face_mismatch"     // usable faces that are not the chip photo's holder
	ReasonNotLive         = "not_live"          // the matched face failed passive liveness
	ReasonNoConsent       = "no_consent"        // no smile on the matched face in time
)

// ErrDebugCaptureInProduction is returned by NewVerifier when a debug
// capture directory is configured in production mode.
var ErrDebugCaptureInProduction = errors.New("face: debug capture is refused in production mode")

// Config holds the Verifier's thresholds and timeouts. Zero fields take the
// DefaultConfig values.
type Config struct {
	// MatchThreshold is the cosine similarity the live template needs with
	// the chip photo: the normalised mean of the unit embeddings of the
	// first MatchFrames (3-5) good frames of the track, decided once. In
	// the smile phase every frame must reach it on its own.
	MatchThreshold float64
	MatchFrames    int
	// LivenessThreshold is the least median p(live) over the same good
	// frames; in the smile phase every frame must reach it on its own.
	LivenessThreshold float64
	// LivenessMotion is the least motion cue (motion.go: how far the
	// tracked face's landmarks departed from an affine image of their
	// median over the last frames, over the inter-eye distance) the face
	// must have shown when it consents: a flat picture, however held,
	// cannot. A smile that meets every other condition without it ends
	// the step as not live.
	LivenessMotion float64
	// Reference are the checks a chip photo must pass
	// (ReasonReferenceQuality otherwise).
	Reference ReferenceGates
	// SmileThreshold is the least p(happy) and MouthRise the least relative
	// rise of mouth width / inter-ocular distance over the person's own
	// neutral baseline; both must hold on SmileFrames consecutive expression
	// evaluations. The baseline is the median of the BaselineFrames frames
	// up to the match, lowered whenever the median of the latest
	// BaselineFrames frames of the smile phase is lower: a shopper who was
	// already smiling at the match relaxes before smiling again, and that
	// relaxed face is their neutral.
	SmileThreshold float64
	MouthRise      float64
	SmileFrames    int
	BaselineFrames int
	// ExpressionHz caps how often (per second of frame time) the expression
	// model runs; it runs beside the frame loop on its own goroutine.
	ExpressionHz float64
	// SyncExpression makes the frame loop wait for each expression result,
	// so a run over a file (SourceFrames, which is not paced) samples the
	// smile at exactly ExpressionHz of media time and is reproducible. A
	// live camera leaves it off: the model then runs beside the loop.
	SyncExpression bool
	// MatchTimeout bounds the match and liveness phase, SmileTimeout the
	// smile phase, both in frame time (the camera's clock).
	MatchTimeout time.Duration
	SmileTimeout time.Duration
	// Gates are the per-frame quality limits.
	Gates Gates
	// Track configures the face tracker.
	TrackMinIoU    float64
	TrackMaxMissed int
	// DetectEvery: in the match phase, a frame that follows one which
	// passed every check finds the tracked face from that frame's
	// landmarks instead of running the detector (follow.go), and the
	// detector runs on at least every DetectEvery-th frame; 1 runs it on
	// every frame. The smile phase always runs it (the second-face check
	// needs every face in view).
	DetectEvery int
	// SecondFaceArea: in the smile phase, another face whose box has at
	// least this fraction of the tracked face's area stops the smile
	// count (guidance "one_person") until it leaves.
	SecondFaceArea float64

	// DebugCaptureDir, for the lab only, receives the frames at the match
	// and consent decisions as JPEG. Empty (the default) writes nothing;
	// NewVerifier refuses it when Production is set.
	DebugCaptureDir string
	Production      bool
	// Logger receives outcome codes and timings, never images, templates
	// or scores; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the calibrated defaults (README, "Face verification
// thresholds").
func DefaultConfig() Config {
	return Config{
		MatchThreshold: DefaultThreshold, MatchFrames: 3,
		LivenessThreshold: 0.5, LivenessMotion: DefaultLivenessMotion, Reference: DefaultReferenceGates(),
		SmileThreshold: 0.8, MouthRise: 0.10, SmileFrames: 4, BaselineFrames: 5,
		ExpressionHz: 8,
		MatchTimeout: 10 * time.Second, SmileTimeout: 10 * time.Second,
		Gates:       DefaultGates(),
		TrackMinIoU: 0.3, TrackMaxMissed: 5,
		DetectEvery:    3,
		SecondFaceArea: 0.4,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	f := func(v *float64, def float64) {
		if *v <= 0 {
			*v = def
		}
	}
	i := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	t := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	f(&c.MatchThreshold, d.MatchThreshold)
	i(&c.MatchFrames, d.MatchFrames)
	c.MatchFrames = min(c.MatchFrames, 5)
	f(&c.LivenessThreshold, d.LivenessThreshold)
	f(&c.LivenessMotion, d.LivenessMotion)
	f(&c.SmileThreshold, d.SmileThreshold)
	f(&c.MouthRise, d.MouthRise)
	i(&c.SmileFrames, d.SmileFrames)
	i(&c.BaselineFrames, d.BaselineFrames)
	f(&c.ExpressionHz, d.ExpressionHz)
	t(&c.MatchTimeout, d.MatchTimeout)
	t(&c.SmileTimeout, d.SmileTimeout)
	if c.Gates == (Gates{}) {
		c.Gates = d.Gates
	}
	f(&c.TrackMinIoU, d.TrackMinIoU)
	i(&c.TrackMaxMissed, d.TrackMaxMissed)
	i(&c.DetectEvery, d.DetectEvery)
	f(&c.SecondFaceArea, d.SecondFaceArea)
	if c.Reference == (ReferenceGates{}) {
		c.Reference = d.Reference
	}
	return c
}

// Verifier runs the face step of a session: it matches the live face to
// the chip photo, checks passive liveness and waits for the smile that
// confirms. It implements session.Face. One Verify runs at a time per
// Verifier (the frames come from one camera).
type Verifier struct {
	m   *Models
	src FrameSource
	cfg Config
	log *slog.Logger
	mu  sync.Mutex
	pos atomic.Pointer[Position] // the running step's tracked face, nil between steps
	// trace, when set (benchmarks, tests), receives every frame that
	// reached the face pipeline, after it was processed.
	trace func(frameTrace)
}

// frameTrace is what one frame cost and how its face was found.
type frameTrace struct {
	phase    phase
	followed bool          // found from the last landmarks, not detected
	took     time.Duration // the whole frame in the Verifier
	liveness time.Duration // of which the liveness model
}

// Position is where the tracked face was in a camera frame, for the
// screen's face guide. It is frame geometry only: no pixels, no landmarks.
type Position struct {
	Seq   uint64          // the frame's sequence number (camera.Frame.Seq)
	Frame image.Point     // the frame's size
	Box   image.Rectangle // the tracked face, in the frame's pixels
	// Good is whether the frame passed the step's quality gates: all of
	// them while matching; size, centring, sharpness and exposure in the
	// smile phase (a smile may narrow the eyes).
	Good bool
}

// Position returns where the tracked face is while a face step runs; ok is
// false between steps and while no face is tracked.
func (v *Verifier) Position() (p Position, ok bool) {
	if q := v.pos.Load(); q != nil {
		return *q, true
	}
	return Position{}, false
}

var (
	_ session.Face = (*Verifier)(nil)
	_ FrameSource  = (*camera.Pump)(nil)
)

// NewVerifier checks that every model in AllModels is loaded and that the
// configuration is allowed, and returns a Verifier reading frames from src.
func NewVerifier(m *Models, src FrameSource, cfg Config) (*Verifier, error) {
	if m == nil || src == nil {
		return nil, errors.New("face: NewVerifier needs models and a frame source")
	}
	for _, name := range AllModels() {
		if !m.Has(name) {
			return nil, &ModelError{File: string(name), Reason: "not loaded (load face.AllModels())"}
		}
	}
	if cfg.DebugCaptureDir != "" && cfg.Production {
		return nil, ErrDebugCaptureInProduction
	}
	cfg = cfg.withDefaults()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Verifier{m: m, src: src, cfg: cfg, log: log}, nil
}

// Config returns the effective configuration.
func (v *Verifier) Config() Config { return v.cfg }

// QualitySummary says how the frames of a Verify fared at the gates.
type QualitySummary struct {
	Frames   int            `json:"frames"`             // frames read
	NoFace   int            `json:"no_face"`            // frames without the tracked face
	Good     int            `json:"good"`               // frames that passed every gate
	Rejected map[string]int `json:"rejected,omitempty"` // guidance code → frames
	// Medians over the good frames.
	InterEye  float64 `json:"inter_eye"`
	Sharpness float64 `json:"sharpness"`
	Mean      float64 `json:"mean"`
}

// Decision is the full evidence of one Verify: the session's FaceResult
// plus timings and the quality summary. It holds no image or template.
type Decision struct {
	Result    session.FaceResult `json:"result"`
	Started   time.Time          `json:"started"`
	FaceAt    time.Time          `json:"face_at,omitzero"`    // first frame with a face
	GoodAt    time.Time          `json:"good_at,omitzero"`    // first good frame
	MatchedAt time.Time          `json:"matched_at,omitzero"` // match and liveness decided
	Finished  time.Time          `json:"finished"`
	Tracks    int                `json:"tracks"` // face tracks started
	// Reference is what the chip photo's checks measured.
	Reference ReferenceQuality `json:"reference"`
	// FusedSimilarity is the live template's similarity, on which the
	// match was decided, over FusedFrames good frames; Result.Similarity
	// is the median over every good frame of the track.
	FusedSimilarity float64 `json:"fused_similarity"`
	FusedFrames     int     `json:"fused_frames"`
	// Motion is the liveness motion cue when the smile was met (or at the
	// end), over MotionFrames frames of the tracked face.
	Motion       float64 `json:"motion"`
	MotionFrames int     `json:"motion_frames"`
	// Rematches counts returns from the smile phase to the match phase
	// (a frame that failed the identity or liveness check).
	Rematches int `json:"rematches"`
	// Extended is the time the shopper's extensions added to the limits.
	Extended time.Duration `json:"extended,omitempty"`
	// MatchLatencyMS is wall time from receiving the first good frame to
	// the match decision (MatchMS is the same span in frame time, without
	// the processing of the deciding frame).
	MatchLatencyMS float64 `json:"match_latency_ms"`
	// FramesToMatch is how many frames had been read at the match decision.
	FramesToMatch int `json:"frames_to_match"`
	// Detected and Followed count the frames whose face the detector found
	// and those followed from the previous frame's landmarks (match phase).
	Detected  int            `json:"detected_frames"`
	Followed  int            `json:"followed_frames"`
	Quality   QualitySummary `json:"quality"`    // gate results
	Smile     SmileSummary   `json:"smile"`      // consent evidence
	Config    Config         `json:"-"`          // thresholds used
	WallMS    float64        `json:"wall_ms"`    // processing time
	Guidance  string         `json:"guidance"`   // last guidance shown
	MatchMS   float64        `json:"match_ms"`   // first good frame → match decision, frame time
	ConsentMS float64        `json:"consent_ms"` // smile phase start → consent, frame time
}

// SmileSummary is the evidence of the smile phase.
type SmileSummary struct {
	Evaluations int     `json:"evaluations"`    // expression model runs
	MaxHappy    float64 `json:"max_happy"`      // highest p(happy)
	MaxRise     float64 `json:"max_mouth_rise"` // highest relative mouth rise over the baseline
	Consecutive int     `json:"consecutive"`    // best run of evaluations meeting both conditions
	// The per-frame checks of the smile phase: frames embedded against
	// the chip photo, and how many failed it, failed liveness or had a
	// second face in view.
	IdentityChecks   int `json:"identity_checks"`
	IdentityFailures int `json:"identity_failures"`
	LivenessFailures int `json:"liveness_failures"`
	SecondFace       int `json:"second_face"`
}

// Verify implements session.Face.
func (v *Verifier) Verify(ctx context.Context, reference []byte, progress func(session.FaceProgress)) (session.FaceResult, error) {
	d, err := v.verifyDecision(ctx, reference, progress, nil)
	return d.Result, err
}

// VerifyExtendable implements session.FaceExtender: each value on more
// (the shopper took the session's offer of more time) gives the phase
// the step is in its whole time again, counted from the next frame. Only
// the time changes: the match is still decided once on MatchFrames good
// frames (a mismatch ends the step at once, however much time is left),
// and every frame of the smile phase must still show the matched, live
// person, so more time buys no more tries at a match, only time to get
// into view and to smile.
func (v *Verifier) VerifyExtendable(ctx context.Context, reference []byte, progress func(session.FaceProgress), more <-chan struct{}) (session.FaceResult, error) {
	d, err := v.verifyDecision(ctx, reference, progress, more)
	return d.Result, err
}

var _ session.FaceExtender = (*Verifier)(nil)

type phase int

const (
	phaseMatch phase = iota
	phaseSmile
)

// exprJob is one expression model run; epoch ties its result to the
// smile-phase evidence it was taken under (see run.epoch).
type exprJob struct {
	blob  gocv.Mat
	ratio float64
	at    time.Time
	epoch uint64
}

type exprResult struct {
	happy float64
	ratio float64
	at    time.Time
	epoch uint64
	err   error
}

// run is the state of one Verify.
type run struct {
	v        *Verifier
	cfg      Config
	ref      *Reference
	progress func(session.FaceProgress)
	d        Decision

	tracker    Tracker
	follow     follower
	phase      phase
	phaseStart time.Time
	stepStart  time.Time // frame time of the first frame
	// more receives the session's extensions; extra is the time they
	// added to the phase and step limits (see extend).
	more      <-chan struct{}
	extra     time.Duration
	lastStage string
	lastGuide string
	lastUntil time.Time
	seenFace  bool
	bestSim   float64
	goodWall  time.Time // when the first good frame was received
	recv      time.Time // when the current frame was received

	// per track
	track  int
	sims   []float64 // good-frame similarities
	fused  fusion    // unit embeddings of the track's good frames
	motion motionCue // landmarks of the track's frames
	// stillSmile is set once a smile met the consent conditions on a face
	// whose motion cue was too low: the step then ends as not live.
	stillSmile bool
	live       []float64
	ratios     []float64
	baseline   float64
	// matchBaseline is the baseline taken at the match, the floor's reference.
	matchBaseline float64
	consec        int
	lastSubmit    time.Time
	inflight      bool
	// epoch changes whenever the smile evidence must start again (a new
	// track, a new smile phase, a failed identity, liveness or one-person
	// check): an expression result of another epoch is dropped.
	epoch uint64

	interEye, sharp, mean []float64

	// liveTook is the liveness model's time on the current frame (trace).
	liveTook time.Duration

	jobs    chan exprJob
	results chan exprResult
}

// VerifyDecision runs the face step and returns its full Decision. It
// returns an error only when the frames stop for a reason other than the
// end of a file (ctx done, camera closed) or a model fails; declines are
// Decision.Result.Reason.
func (v *Verifier) VerifyDecision(ctx context.Context, reference []byte, progress func(session.FaceProgress)) (Decision, error) {
	return v.verifyDecision(ctx, reference, progress, nil)
}

func (v *Verifier) verifyDecision(ctx context.Context, reference []byte, progress func(session.FaceProgress), more <-chan struct{}) (Decision, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	cfg := v.cfg
	r := &run{v: v, cfg: cfg, progress: progress, more: more}
	r.d.Started = time.Now()
	r.d.Config = cfg
	r.d.Quality.Rejected = map[string]int{}
	r.d.Result = session.FaceResult{MatchThreshold: cfg.MatchThreshold, LivenessThreshold: cfg.LivenessThreshold, Models: v.m.Hashes()}
	r.tracker = Tracker{MinIoU: cfg.TrackMinIoU, MaxMissed: cfg.TrackMaxMissed}
	r.follow = follower{every: cfg.DetectEvery}
	err := r.verify(ctx, reference)
	v.pos.Store(nil)
	r.d.Finished = time.Now()
	r.d.WallMS = ms(r.d.Finished.Sub(r.d.Started))
	r.d.Quality.InterEye, r.d.Quality.Sharpness, r.d.Quality.Mean = median(r.interEye), median(r.sharp), median(r.mean)
	q := r.d.Quality
	r.d.Result.Quality = &session.FaceQuality{Frames: q.Frames, Good: q.Good, NoFace: q.NoFace, Rejected: maps.Clone(q.Rejected)}
	if err != nil {
		v.log.Warn("face step failed", "err", err, "frames", r.d.Quality.Frames, "wall_ms", r.d.WallMS)
	} else {
		v.log.Info("face step done", "matched", r.d.Result.Matched, "live", r.d.Result.Live,
			"consent", r.d.Result.Consent, "reason", r.d.Result.Reason, "frames", r.d.Quality.Frames, "wall_ms", r.d.WallMS,
			"rematches", r.d.Rematches, "extended", r.d.Extended, "smile_evaluations", r.d.Smile.Evaluations, "identity_failures", r.d.Smile.IdentityFailures,
			"liveness_failures", r.d.Smile.LivenessFailures, "second_face", r.d.Smile.SecondFace)
	}
	return r.d, err
}

func (r *run) verify(ctx context.Context, reference []byte) error {
	v := r.v
	ref, err := v.m.ReferenceFromImage(reference, r.cfg.Reference)
	if err != nil {
		if reason, ok := IsReferenceDecline(err); ok {
			r.d.Result.Reason = reason
			return nil
		}
		return fmt.Errorf("face: reference: %w", err)
	}
	r.ref = ref
	r.d.Reference = ref.Quality
	defer ref.Wipe()

	// The expression worker: one model run at a time, beside the frame loop.
	r.jobs = make(chan exprJob, 1)
	r.results = make(chan exprResult, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for j := range r.jobs {
			p, err := v.m.ExpressionFromBlob(j.blob)
			wipe(&j.blob)
			res := exprResult{ratio: j.ratio, at: j.at, epoch: j.epoch, err: err}
			if err == nil {
				res.happy = p[ExprHappy]
			}
			r.results <- res
		}
	})
	defer func() {
		close(r.jobs)
		wg.Wait()
		// A result still in the channel is dropped: the step is over.
		select {
		case <-r.results:
		default:
		}
	}()

	// The first guidance goes out with the first frame, which starts the
	// phase's clock, so it carries the step's end (FaceProgress.Until).
	r.d.Guidance = GuideLookAtCamera
	var seq uint64
	for {
		// Frame time bounds the phases and the step; this wall-clock
		// watchdog covers a camera that stops delivering. It bounds the
		// wait for each frame, not the step, so a slow (loaded) machine
		// working through a file's frames is not cut short.
		wait, cancel := context.WithTimeout(ctx, frameWait)
		f, err := v.src.Next(wait, seq)
		stalled := wait.Err() != nil
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, camera.ErrEndOfStream) || stalled {
				if err := r.collect(true); err != nil {
					return err
				}
				if !r.d.Result.Consent {
					r.timeout()
				}
				return nil
			}
			return fmt.Errorf("face: camera: %w", err)
		}
		seq = f.Seq
		done, err := r.frame(f)
		f.Close()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// frameWait is how long the step waits for the camera's next frame
// before it ends as a timeout.
const frameWait = 5 * time.Second

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func (r *run) emit(stage, guide string) {
	r.d.Guidance = guide
	until := r.deadline()
	if stage == r.lastStage && guide == r.lastGuide && until.Equal(r.lastUntil) {
		return
	}
	r.lastStage, r.lastGuide, r.lastUntil = stage, guide, until
	if r.progress != nil {
		r.progress(session.FaceProgress{Stage: stage, Guidance: guide, Until: until})
	}
}

// limits are the current phase's time and the whole step's, each with
// the time the shopper added.
func (r *run) limits() (phase, step time.Duration) {
	phase = r.cfg.MatchTimeout
	if r.phase == phaseSmile {
		phase = r.cfg.SmileTimeout
	}
	return phase + r.extra, r.cfg.MatchTimeout + r.cfg.SmileTimeout + r.extra
}

// deadline is the frame time the step ends at unless more time is
// taken (zero before the first frame).
func (r *run) deadline() time.Time {
	if r.phaseStart.IsZero() {
		return time.Time{}
	}
	phase, step := r.limits()
	end := r.phaseStart.Add(phase)
	if s := r.stepStart.Add(step); s.Before(end) {
		end = s
	}
	return end
}

// extend gives the current phase its whole time again from frame time
// now: both limits grow by the same amount, so the step's end moves to
// now plus the phase's configured time (and a later phase, e.g. a return
// to matching, keeps the longer limits: this shopper needs the time).
func (r *run) extend(now time.Time) {
	if r.phaseStart.IsZero() {
		return // no frame yet: the phase's time has not begun
	}
	phase := r.cfg.MatchTimeout
	if r.phase == phaseSmile {
		phase = r.cfg.SmileTimeout
	}
	if d := now.Add(phase).Sub(r.deadline()); d > 0 {
		r.extra += d
		r.d.Extended += d
	}
	r.emit(r.lastStage, r.lastGuide)
}

func (r *run) stage() string {
	if r.phase == phaseSmile {
		return "smile"
	}
	return "match"
}

// timeout ends the step when the frames or the time ran out.
func (r *run) timeout() {
	res := &r.d.Result
	switch {
	case r.stillSmile:
		// A smile was met, but on a face that had not moved as only a
		// live one can.
		res.Reason = ReasonNotLive
		res.Live = false
	case r.phase == phaseSmile:
		res.Reason = ReasonNoConsent
	case !r.seenFace:
		res.Reason = ReasonNoFace
	case r.d.Quality.Good > 0 && r.bestSim < r.cfg.MatchThreshold:
		res.Reason = ReasonMismatch
		res.Similarity = r.bestSim
	default:
		res.Reason = ReasonTimeout
		res.Similarity = r.bestSim
	}
}

// newTrack forgets everything learnt about the previous face.
func (r *run) newTrack(id int, at time.Time) {
	r.track = id
	r.d.Tracks++
	r.sims, r.live, r.ratios = nil, nil, nil
	r.fused.reset()
	r.motion.reset()
	r.follow.reset()
	r.consec = 0
	r.epoch++
	if r.phase == phaseSmile {
		// A face that was lost must match again before it may consent.
		r.phase = phaseMatch
		r.phaseStart = at
		r.d.Result.Matched, r.d.Result.Live = false, false
	}
}

// view is one camera frame's tracked face once it passed the geometry
// and pixel gates, as the phases see it.
type view struct {
	f     *camera.Frame
	faces []Detection // every face in the frame
	idx   int         // the tracked face's index in faces
	det   Detection   // faces[idx]
	l     *Landmarks
	grey  gocv.Mat        // the face box in grey (owned and wiped by frame)
	box   image.Rectangle // grey's place in the frame
	stats FaceStats
	place func(good bool) // publishes the guide's position
}

// frame processes one camera frame and reports whether the step is over.
func (r *run) frame(f *camera.Frame) (bool, error) {
	cfg := r.cfg
	m := r.v.m
	r.recv = time.Now()
	r.d.Quality.Frames++
	if r.phaseStart.IsZero() {
		r.phaseStart, r.stepStart = f.Time, f.Time
	}
	select {
	case <-r.more:
		r.extend(f.Time)
	default:
	}
	if err := r.collect(false); err != nil {
		return false, err
	}
	if r.d.Result.Consent {
		r.capture(f.Mat, "consent")
		return true, nil
	}
	limit, stepLimit := r.limits()
	// A return to matching restarts the phase clock; the step as a whole
	// still ends after both phases' time.
	if f.Time.Sub(r.phaseStart) > limit || f.Time.Sub(r.stepStart) > stepLimit {
		r.timeout()
		return true, nil
	}
	img := f.Mat
	if err := checkImage(img); err != nil {
		return false, fmt.Errorf("face: camera frame: %w", err)
	}
	size := image.Pt(img.Cols(), img.Rows())
	if tr := r.v.trace; tr != nil {
		t0, ph := time.Now(), r.phase
		r.liveTook = 0
		before := r.d.Followed
		defer func() {
			tr(frameTrace{phase: ph, followed: r.d.Followed > before, took: time.Since(t0), liveness: r.liveTook})
		}()
	}
	// One grey copy of the face serves the landmarks, the pixel gates and
	// the eye model.
	var fc found
	defer func() { wipe(&fc.grey) }()
	followed, err := r.followFace(img, size, &fc)
	if err != nil {
		return false, err
	}
	faces, idx := []Detection{fc.det}, 0
	if followed {
		r.d.Followed++
	} else {
		faces, err = m.Detect(img)
		if err != nil {
			return false, err
		}
		r.d.Detected++
		var id int
		var st TrackState
		idx, id, st = r.tracker.Update(faces, size)
		if st == TrackNew {
			r.newTrack(id, f.Time)
		}
		if idx < 0 {
			r.v.pos.Store(nil)
			r.d.Quality.NoFace++
			r.emit(r.stage(), GuideLookAtCamera)
			return false, nil
		}
		fc.det = faces[idx]
		if fc.grey, fc.box, err = faceGrey(img, fc.det.Box); err != nil {
			return false, err
		}
		if fc.l, err = m.landmarksGrey(fc.grey, fc.box); err != nil {
			return false, err
		}
		r.follow.detected(fc.l, fc.det.Raw)
	}
	det, l, grey := fc.det, fc.l, fc.grey
	if !r.seenFace {
		r.seenFace, r.d.FaceAt = true, f.Time
	}
	if !followed {
		// The motion cue takes the landmarks of detected frames only: its
		// threshold was set on those, and a followed frame's landmarks
		// differ from them by a little (follow.go) that a still picture
		// would show as motion.
		r.motion.add(l)
	}
	fv := &view{f: f, faces: faces, idx: idx, det: det, l: l, grey: grey, box: fc.box,
		// The guide's position is published once the gates have decided,
		// so a steady good face does not flicker between good and not.
		place: func(good bool) { r.v.pos.Store(&Position{Seq: f.Seq, Frame: size, Box: det.Box, Good: good}) },
	}
	g := cfg.Gates
	if code := g.geometry(det.Box, l, size); code != "" {
		return r.reject(fv, code)
	}
	fv.stats, err = Stats(grey, image.Rect(0, 0, grey.Cols(), grey.Rows()))
	if err != nil {
		return false, err
	}
	if code := g.pixels(fv.stats); code != "" {
		return r.reject(fv, code)
	}
	if r.phase == phaseSmile {
		return r.smileFrame(fv)
	}
	return r.matchFrame(fv)
}

// found is the tracked face of a frame: its detection (or the one derived
// from its landmarks), its grey crop (owned and wiped by frame), the
// crop's place in the frame and the landmarks found in it.
type found struct {
	det  Detection
	grey gocv.Mat
	box  image.Rectangle
	l    *Landmarks
}

// followFace finds the tracked face of a match-phase frame from the
// previous frame's landmarks when the follower allows it (follow.go),
// filling fc. ok is false when the frame must run the detector: following
// is not allowed now, or the face it found leaves the frame or moved more
// than the tracker would follow.
func (r *run) followFace(img gocv.Mat, size image.Point, fc *found) (ok bool, err error) {
	if r.phase != phaseMatch {
		r.follow.reset()
		return false, nil
	}
	in, ok := r.follow.take(size)
	if !ok {
		return false, nil
	}
	g, b, err := faceGrey(img, in)
	if err != nil {
		return false, err
	}
	lf, err := r.v.m.landmarksGrey(g, b)
	if err != nil {
		wipe(&g)
		return false, err
	}
	d, ok := r.follow.derive(lf, size)
	if ok {
		_, ok = r.tracker.Follow(d.Box)
	}
	if !ok {
		wipe(&g)
		return false, nil
	}
	r.follow.since++
	*fc = found{det: d, grey: g, box: b, l: lf}
	return true, nil
}

// reject counts a frame that failed gate code and shows its guidance.
func (r *run) reject(fv *view, code string) (bool, error) {
	fv.place(false)
	r.d.Quality.Rejected[code]++
	r.emit(r.stage(), code)
	return false, nil
}

// capture writes a lab debug frame when DebugCaptureDir is set (never in
// production: NewVerifier refuses that).
func (r *run) capture(img gocv.Mat, what string) {
	dir := r.cfg.DebugCaptureDir
	if dir == "" || r.cfg.Production {
		return
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.v.log.Warn("face debug capture", "err", err)
		return
	}
	name := filepath.Join(dir, fmt.Sprintf("%d-%s.jpg", r.d.Started.UnixNano(), what))
	if !gocv.IMWrite(name, img) {
		r.v.log.Warn("face debug capture failed", "file", name)
	}
}
