#include "cliptune_png.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t offset;
    char *message;
    size_t message_size;
} reader_state;

static void on_error(png_structp png, png_const_charp text) {
    reader_state *state = (reader_state *)png_get_error_ptr(png);
    if (state->message && state->message_size > 0) snprintf(state->message, state->message_size, "%s", text);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;   // damaged ancillary chunks and the like: libpng recovers, as Pillow does
}

static void on_read(png_structp png, png_bytep out, size_t count) {
    reader_state *state = (reader_state *)png_get_io_ptr(png);
    if (count > state->size - state->offset) png_error(png, "the file ends early (truncated PNG)");
    memcpy(out, state->data + state->offset, count);
    state->offset += count;
}

int cliptune_png_read(const uint8_t *data, size_t size, cliptune_png_info *info,
                      uint8_t *pixels, size_t pixels_size, char *message, size_t message_size) {
    reader_state state = { data, size, 0, message, message_size };
    if (message && message_size > 0) message[0] = 0;
    memset(info, 0, sizeof *info);
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        if (message && message_size > 0) snprintf(message, message_size, "no PNG signature");
        return -1;
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, on_error, on_warning);
    if (!png) {
        if (message && message_size > 0) snprintf(message, message_size, "libpng: out of memory");
        return -1;
    }
    png_infop header = png_create_info_struct(png);
    // Volatile: changed after setjmp and read after a longjmp.
    png_bytep *volatile rows = NULL;
    if (!header || setjmp(png_jmpbuf(png))) {
        png_free(png, rows);
        png_destroy_read_struct(&png, header ? &header : NULL, NULL);
        if (message && message_size > 0 && message[0] == 0) snprintf(message, message_size, "libpng: out of memory");
        return -1;
    }
    png_set_read_fn(png, &state, on_read);
    png_read_info(png, header);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, header, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    info->width = width;
    info->height = height;
    info->bit_depth = bit_depth;
    info->color_type = color_type;
    info->interlaced = interlace != PNG_INTERLACE_NONE;

    png_bytep trans_alpha = NULL;
    int num_trans = 0;
    png_color_16p trans_color = NULL;
    if (png_get_valid(png, header, PNG_INFO_tRNS)) {
        png_get_tRNS(png, header, &trans_alpha, &num_trans, &trans_color);
        if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_RGB) {
            info->has_trns = 1;
            info->trns_gray = trans_color->gray;
            info->trns_red = trans_color->red;
            info->trns_green = trans_color->green;
            info->trns_blue = trans_color->blue;
        }
    }

    // 8-bit samples in the file's own channels; transparency of gray and RGB images is left
    // to the caller (which applies it as Pillow does).
    if (bit_depth == 16) png_set_strip_16(png);
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_set_palette_to_rgb(png);
        if (num_trans > 0) png_set_tRNS_to_alpha(png);
    } else if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) {
        png_set_expand_gray_1_2_4_to_8(png);
    }
    if (info->interlaced) png_set_interlace_handling(png);
    png_read_update_info(png, header);
    info->channels = png_get_channels(png, header);
    size_t row_bytes = png_get_rowbytes(png, header);
    if (row_bytes != (size_t)width * (size_t)info->channels || png_get_bit_depth(png, header) != 8) {
        png_error(png, "unexpected row layout after the 8-bit transformations");
    }

    if (pixels) {
        if (pixels_size != row_bytes * height) png_error(png, "output buffer of the wrong size");
        rows = (png_bytep *)png_malloc(png, sizeof(png_bytep) * height);
        for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + (size_t)y * row_bytes;
        png_read_image(png, rows);
        png_free(png, rows);
        rows = NULL;
    }
    png_destroy_read_struct(&png, &header, NULL);
    return 0;
}
