<?php
require(__DIR__ . '/../config.php');
$id = (int)($_GET['id'] ?? 0);
echo "Course $id\n";
