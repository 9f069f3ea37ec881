#ifndef KIOSK_FACE_THREADS_H
#define KIOSK_FACE_THREADS_H
#ifdef __cplusplus
extern "C" {
#endif
void kiosk_face_set_num_threads(int n);
int kiosk_face_get_num_threads(void);
#ifdef __cplusplus
}
#endif
#endif
