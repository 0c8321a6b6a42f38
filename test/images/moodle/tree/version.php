<?php
// MOODLE VERSION INFORMATION (test stand-in with the real file's shape).
defined('MOODLE_INTERNAL') || die();

$version  = 2024100700.00;              // YYYYMMDD      = weekly release date of this DEV branch.
$release  = '4.5 (Build: 20241007)';    // Human-friendly version name
$branch   = '405';                      // This version's branch.
$maturity = MATURITY_STABLE;            // This version's maturity level.
