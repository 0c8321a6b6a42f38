<?php
defined('MOODLE_INTERNAL') || die();
$THEME->name = 'boost';
$THEME->sheets = [];
