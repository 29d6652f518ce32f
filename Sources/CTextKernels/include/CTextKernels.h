// The CSV reader's number parsing (decimal.c; FeatureStore's `convert` uses it).
#pragma once

/// What a decimal cell held; the values of FeatureStore's `CellStatus`.
enum { SERTRAIN_CELL_NUMBER = 0, SERTRAIN_CELL_TEXT = 4, SERTRAIN_CELL_OUT_OF_RANGE = 5 };

/// Parses the longest decimal number at the start of `p[0..<limit]`, `[+-]digits[.digits][(e|E)[+-]digits]`, to
/// the correctly rounded float (as strtof would). Sets `*used` to the bytes it spans (0 when no digits start
/// there, with SERTRAIN_CELL_TEXT) and returns SERTRAIN_CELL_NUMBER or SERTRAIN_CELL_OUT_OF_RANGE.
int sertrain_parse_decimal(const unsigned char *p, long limit, float *value, long *used);

/// Parses up to `max` consecutive cells of one line `line[*position..<end]` that are each a decimal number followed
/// by ',' or the line's end, into `out`. Stops before the first cell that is anything else (quoted, empty, text,
/// out of range: the caller's general path). Returns the cells parsed and leaves `*position` one past the last
/// one's comma, or at `end + 1` when it ended the line.
long sertrain_parse_number_cells(const unsigned char *line, long *position, long end, float *out, long max);

/// How this CPU parses the common cell: "SSE4.1", or "digit by digit" (for benchmark records).
const char *sertrain_number_cells_level(void);
