<?php
require(__DIR__ . '/config.php');
if (file_exists(cli_maintenance_file())) {
    http_response_code(503);
    readfile(cli_maintenance_file());
    exit;
}
[$version, $release] = moodle_code_version();
try {
    $n = moodle_db()->query("SELECT COUNT(*) FROM {$CFG->prefix}course")->fetchColumn();
    echo "Moodle $release: $n courses\n";
} catch (Throwable $e) {
    http_response_code(500);
    echo "Error reading database\n";
}
