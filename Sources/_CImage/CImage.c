// PNG and JPEG decoding with libpng and libjpeg(-turbo); see include/CImage.h.
//
// Each library's error handler longjmps back to the setjmp in the function that called the
// library, which frees what it allocated and returns an error code. No Swift frame is ever
// between the two, and everything touched after setjmp is `volatile` or unchanged.

#include "CImage.h"

#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

void bp_image_free(bp_image *image) {
    free(image->pixels);
    image->pixels = NULL;
}

static void reset(bp_image *image) {
    memset(image, 0, sizeof *image);
}

/// Whether width x height x channels bytes fit the limit and memory; sets the message when not.
static int dimensions_ok(bp_image *image, const char *format, unsigned long width, unsigned long height,
                         long long max_pixels) {
    if (width == 0 || height == 0) {
        snprintf(image->message, sizeof image->message, "the %s header claims an empty %lux%lu image", format, width, height);
        return 0;
    }
    // Both factors are below 2^32, so the product fits 64 bits.
    unsigned long long pixels = (unsigned long long)width * (unsigned long long)height;
    if (max_pixels < 0 || pixels > (unsigned long long)max_pixels) {
        snprintf(image->message, sizeof image->message,
                 "the %s header claims %lux%lu pixels, more than the limit of %lld", format, width, height, max_pixels);
        return 0;
    }
    return 1;
}

/// Composites interleaved gray+alpha or RGBA pixels over white in place, dropping alpha:
/// `v' = (v·a + 255·(255 − a) + 127) / 255`, rounded to nearest.
static void composite_over_white(unsigned char *pixels, size_t count, int color_channels) {
    const unsigned char *in = pixels;
    unsigned char *out = pixels;
    for (size_t i = 0; i < count; i++) {
        unsigned a = in[color_channels];
        for (int c = 0; c < color_channels; c++) {
            *out++ = (unsigned char)((in[c] * a + 255u * (255u - a) + 127u) / 255u);
        }
        in += color_channels + 1;
    }
}

// MARK: - PNG

struct png_source {
    const unsigned char *data;
    size_t size;
    size_t offset;
};

static void png_failed(png_structp png, png_const_charp text) {
    bp_image *image = png_get_error_ptr(png);
    snprintf(image->message, sizeof image->message, "corrupt PNG: %s", text);
    png_longjmp(png, 1);
}

static void png_warned(png_structp png, png_const_charp text) {
    (void)png;  // warnings (an odd ancillary chunk, a known-incorrect sRGB profile) are not failures
    (void)text;
}

static void png_read_memory(png_structp png, png_bytep out, size_t count) {
    struct png_source *source = png_get_io_ptr(png);
    if (count > source->size - source->offset) {
        bp_image *image = png_get_error_ptr(png);
        snprintf(image->message, sizeof image->message, "truncated PNG: the file ends after %zu bytes", source->size);
        png_longjmp(png, 1);
    }
    memcpy(out, source->data + source->offset, count);
    source->offset += count;
}

int bp_decode_png(const unsigned char *data, size_t size, long long max_pixels, bp_image *image) {
    reset(image);
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        snprintf(image->message, sizeof image->message, "not a PNG file (no PNG signature)");
        return 1;
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, image, png_failed, png_warned);
    if (!png) {
        snprintf(image->message, sizeof image->message, "cannot start the PNG decoder");
        return 1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(image->message, sizeof image->message, "cannot start the PNG decoder");
        return 1;
    }
    struct png_source source = {data, size, 0};
    unsigned char *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    png_set_read_fn(png, &source, png_read_memory);
    // libpng's own cap (a million pixels a side) would answer first with its own words; the
    // pixel limit below is the one that counts.
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    if (!dimensions_ok(image, "PNG", width, height, max_pixels)) {
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    int transparency = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    const char *kind = "gray";
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: kind = "grayscale"; break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: kind = "grayscale + alpha"; break;
    case PNG_COLOR_TYPE_RGB: kind = "RGB"; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: kind = "RGB + alpha"; break;
    case PNG_COLOR_TYPE_PALETTE: kind = "palette"; break;
    }
    snprintf(image->source, sizeof image->source, "PNG, %d-bit %s%s%s", bit_depth, kind,
             transparency ? " + transparency" : "", interlace == PNG_INTERLACE_NONE ? "" : ", interlaced");

    // Everything to 8-bit gray, gray+alpha, RGB or RGBA.
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (transparency) png_set_tRNS_to_alpha(png);
    if (bit_depth == 16) png_set_scale_16(png);  // v8 = round(v16 · 255 / 65535)
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int channels = png_get_channels(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    if (channels < 1 || channels > 4 || png_get_bit_depth(png, info) != 8 || row_bytes != (size_t)width * (size_t)channels) {
        snprintf(image->message, sizeof image->message, "unsupported PNG layout (%d channels, %zu bytes per row)", channels, row_bytes);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    pixels = malloc(row_bytes * height);
    rows = malloc(sizeof(png_bytep) * height);
    if (!pixels || !rows) {
        snprintf(image->message, sizeof image->message, "out of memory for a %lux%lu PNG", (unsigned long)width, (unsigned long)height);
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + (size_t)y * row_bytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);  // reads up to IEND: a file cut after its image data is still truncated

    int color = (channels == 2 || channels == 4) ? channels - 1 : channels;
    if (color != channels) composite_over_white(pixels, (size_t)width * height, color);
    image->pixels = pixels;
    image->width = (int)width;
    image->height = (int)height;
    image->channels = color;
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
}

// MARK: - JPEG

struct jpeg_failure {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    bp_image *image;
    /// The first warning that means damaged data (libjpeg decodes on after those, filling gray).
    int damaged;
    char warning[JMSG_LENGTH_MAX];
};

static void jpeg_failed(j_common_ptr decoder) {
    struct jpeg_failure *failure = (struct jpeg_failure *)decoder->err;
    char text[JMSG_LENGTH_MAX];
    (*decoder->err->format_message)(decoder, text);
    snprintf(failure->image->message, sizeof failure->image->message, "corrupt JPEG: %s", text);
    longjmp(failure->jump, 1);
}

static void jpeg_message(j_common_ptr decoder, int level) {
    struct jpeg_failure *failure = (struct jpeg_failure *)decoder->err;
    if (level >= 0) return;  // trace messages
    decoder->err->num_warnings++;
    // Stray bytes between markers are harmless; every other warning (a premature end, a
    // corrupt entropy-coded segment, a lost restart marker) means missing pixels.
    if (decoder->err->msg_code == JWRN_EXTRANEOUS_DATA || failure->damaged) return;
    failure->damaged = 1;
    (*decoder->err->format_message)(decoder, failure->warning);
}

static void jpeg_silent(j_common_ptr decoder) { (void)decoder; }

int bp_decode_jpeg(const unsigned char *data, size_t size, long long max_pixels, bp_image *image) {
    reset(image);
    if (size < 3 || data[0] != 0xFF || data[1] != 0xD8 || data[2] != 0xFF) {
        snprintf(image->message, sizeof image->message, "not a JPEG file (no JPEG start-of-image marker)");
        return 1;
    }
    struct jpeg_decompress_struct decoder;
    struct jpeg_failure failure;
    memset(&failure, 0, sizeof failure);
    failure.image = image;
    decoder.err = jpeg_std_error(&failure.manager);
    failure.manager.error_exit = jpeg_failed;
    failure.manager.emit_message = jpeg_message;
    failure.manager.output_message = jpeg_silent;
    unsigned char *volatile pixels = NULL;
    if (setjmp(failure.jump)) {
        jpeg_destroy_decompress(&decoder);
        free(pixels);
        return 1;
    }
    jpeg_create_decompress(&decoder);
    jpeg_mem_src(&decoder, data, (unsigned long)size);
    jpeg_read_header(&decoder, TRUE);
    if (!dimensions_ok(image, "JPEG", decoder.image_width, decoder.image_height, max_pixels)) {
        jpeg_destroy_decompress(&decoder);
        return 1;
    }
    int channels;
    const char *kind;
    switch (decoder.jpeg_color_space) {
    case JCS_GRAYSCALE: decoder.out_color_space = JCS_GRAYSCALE; channels = 1; kind = "grayscale"; break;
    case JCS_YCbCr: decoder.out_color_space = JCS_RGB; channels = 3; kind = "YCbCr"; break;
    case JCS_RGB: decoder.out_color_space = JCS_RGB; channels = 3; kind = "RGB"; break;
    default:
        snprintf(image->message, sizeof image->message, "unsupported JPEG color space (CMYK or YCCK); save it as RGB");
        jpeg_destroy_decompress(&decoder);
        return 1;
    }
    snprintf(image->source, sizeof image->source, "JPEG, %s %s", decoder.progressive_mode ? "progressive" : "baseline", kind);
    jpeg_start_decompress(&decoder);
    if (decoder.output_components != channels) {
        snprintf(image->message, sizeof image->message, "unsupported JPEG layout (%d components)", decoder.output_components);
        longjmp(failure.jump, 1);
    }
    size_t row_bytes = (size_t)decoder.output_width * (size_t)channels;
    pixels = malloc(row_bytes * decoder.output_height);
    if (!pixels) {
        snprintf(image->message, sizeof image->message, "out of memory for a %ux%u JPEG", decoder.output_width, decoder.output_height);
        longjmp(failure.jump, 1);
    }
    while (decoder.output_scanline < decoder.output_height) {
        JSAMPROW row = pixels + (size_t)decoder.output_scanline * row_bytes;
        jpeg_read_scanlines(&decoder, &row, 1);
    }
    jpeg_finish_decompress(&decoder);
    if (failure.damaged) {
        snprintf(image->message, sizeof image->message, "corrupt or truncated JPEG: %s", failure.warning);
        longjmp(failure.jump, 1);
    }
    image->pixels = pixels;
    image->width = (int)decoder.output_width;
    image->height = (int)decoder.output_height;
    image->channels = channels;
    jpeg_destroy_decompress(&decoder);
    return 0;
}
