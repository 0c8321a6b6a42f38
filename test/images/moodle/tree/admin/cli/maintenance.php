<?php
// CLI maintenance mode switch, as in Moodle: --enable writes climaintenance.html into the dataroot,
// --disable removes it. Exit codes follow Moodle's CLI conventions (0 ok, 1 error).
define('CLI_SCRIPT', true);
require(__DIR__ . '/../../config.php');

$opts = getopt('h', ['enable', 'enablelater:', 'enableold', 'disable', 'help']);
$file = cli_maintenance_file();
echo "== Maintenance mode (https://localhost) ==\n";

if (isset($opts['enable'])) {
    $html = "<!DOCTYPE html><html><head><title>Maintenance</title></head>"
          . "<body>This site is undergoing maintenance and is currently not available</body></html>";
    if (file_put_contents($file, $html) === false) {
        fwrite(STDERR, "Cannot write $file\n");
        exit(1);
    }
    chmod($file, 0644);
    echo "CLI maintenance mode enabled\n";
    exit(0);
}
if (isset($opts['disable'])) {
    if (file_exists($file) && !unlink($file)) {
        fwrite(STDERR, "Cannot remove $file\n");
        exit(1);
    }
    echo "Maintenance mode disabled\n";
    exit(0);
}
if (isset($opts['enableold']) || isset($opts['enablelater'])) {
    echo "Maintenance mode enabled\n";
    exit(0);
}
echo file_exists($file) ? "CLI maintenance mode enabled\n" : "Maintenance mode disabled\n";
echo "Options: --enable --enablelater=MINUTES --enableold --disable --help\n";
exit(0);
