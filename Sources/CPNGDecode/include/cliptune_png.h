// PNG decoding through libpng, behind a C function: libpng reports errors with longjmp, which
// must never cross Swift frames, so every libpng call happens inside this file's setjmp.
#ifndef CLIPTUNE_PNG_H
#define CLIPTUNE_PNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t width;
    uint32_t height;
    /// IHDR as stored: bit depth 1, 2, 4, 8, 16; colour type 0 (gray), 2 (RGB), 3 (palette),
    /// 4 (gray + alpha), 6 (RGBA); Adam7 interlacing.
    int bit_depth;
    int color_type;
    int interlaced;
    /// A tRNS chunk for a gray or RGB image: its raw values (16-bit, as stored; for gray only
    /// `trns_gray`). Palette transparency is applied by the decoder itself (alpha channel).
    int has_trns;
    uint16_t trns_gray, trns_red, trns_green, trns_blue;
    /// Channels of the decoded rows, 8 bits each: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA. Low bit
    /// depths are scaled to 8 bits (×255, ×85, ×17), 16-bit samples keep their high byte,
    /// palettes are expanded (to RGBA when they have a tRNS chunk).
    int channels;
} cliptune_png_info;

/// Reads a PNG held in memory. With `pixels` NULL, reads only up to the image data (the header
/// and the chunks before IDAT) and fills `info`. Otherwise also decodes every row into
/// `pixels`, which must hold exactly width × height × channels bytes. Returns 0 on success,
/// else -1 with a message in `message` (NUL-terminated, truncated to `message_size`).
int cliptune_png_read(const uint8_t *data, size_t size, cliptune_png_info *info,
                      uint8_t *pixels, size_t pixels_size, char *message, size_t message_size);

#endif
