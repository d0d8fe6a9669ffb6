#ifndef BACKPROP_CIMAGE_H
#define BACKPROP_CIMAGE_H

#include <stddef.h>

// PNG and JPEG decoding through the system's libpng and libjpeg(-turbo).
//
// Both libraries report errors by longjmp-ing out of a callback. That must never cross a Swift
// frame, so every setjmp/longjmp pair lives inside one C function here: the functions below
// return 0 on success and non-zero on failure, with a one-line message in `message`.

/// A decoded image: `height` rows of `width` pixels of `channels` bytes each, row-major and
/// interleaved (HWC). `channels` is 1 (gray) or 3 (R, G, B); an alpha channel has been composited
/// over white, 16-bit samples scaled to 8 bits, palettes and low bit depths expanded.
typedef struct bp_image {
    /// The pixels (malloc'd; release with `bp_image_free`), or NULL after a failure.
    unsigned char *pixels;
    int width;
    int height;
    int channels;
    /// What the file held, for people: e.g. "PNG, 16-bit RGB + alpha, interlaced".
    char source[96];
    /// Why decoding failed (one line), or empty.
    char message[256];
} bp_image;

/// Decodes the PNG file held in `data[0 ..< size]`. Refuses images of more than `max_pixels`
/// pixels before allocating them.
int bp_decode_png(const unsigned char *data, size_t size, long long max_pixels, bp_image *image);

/// Decodes the JPEG file held in `data[0 ..< size]` (baseline or progressive; grayscale, YCbCr
/// or RGB). Truncated or corrupt entropy-coded data is an error, not a gray patch.
int bp_decode_jpeg(const unsigned char *data, size_t size, long long max_pixels, bp_image *image);

/// Frees `image->pixels`.
void bp_image_free(bp_image *image);

#endif
