<?php
defined('MOODLE_INTERNAL') || die();
$plugin->version   = 2024100700;
$plugin->requires  = 2024100100;
$plugin->component = 'mod_forum';
