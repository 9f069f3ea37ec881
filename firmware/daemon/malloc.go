package daemon

/*
#include <malloc.h>
*/
import "C"

// trimCHeap hands the C allocator's free memory back to the kernel: the
// face models' inference, FFmpeg and OpenCV free their per-session buffers,
// but glibc keeps the freed pages inside its arenas, so without a trim the
// resident set creeps up session after session (make soak measured it).
// malloc_trim(3) is glibc's; it takes a few milliseconds and runs when a
// session has ended.
func trimCHeap() { C.malloc_trim(0) }
